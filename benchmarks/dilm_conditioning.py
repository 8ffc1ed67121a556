"""DiLM generator class conditioning on the dev split: the share of held-out texts to which a trained generator
gives the lowest loss under their own class token (Generator.conditioning_accuracy; majority class printed too).

Usage: HF_HUB_OFFLINE=1 python benchmarks/dilm_conditioning.py N   (checks every cached stage-1 and stage-2 generator)
"""
import glob, os, sys, time
from dilmbench.methods.dilm import Generator
from dilmbench.tasks import TASKS, load_task_data
data = load_task_data(TASKS["sst2"], "embedded")
n = int(sys.argv[1])
texts, labels = data.texts("dev")[:n], data.labels("dev")[:n]
for name, path in [] + \
        [(p.split("/")[-2] + "/" + p.split("/")[-1], p) for p in sorted(glob.glob(os.path.expanduser(os.environ.get("DILMBENCH_CACHE", "~/.cache/dilmbench")) + "/dilm/sst2/*/final"))]:
    t = time.time()
    g = Generator.from_pretrained(path, 2, add_tokens=not path.endswith("final"))
    print(f"{name}: conditioning accuracy on {n} dev texts {100*g.conditioning_accuracy(texts, labels, 64, 'cpu'):.1f}% "
          f"(majority {100*max(labels.mean(), 1-labels.mean()):.1f}%) [{time.time()-t:.0f} s]", flush=True)
