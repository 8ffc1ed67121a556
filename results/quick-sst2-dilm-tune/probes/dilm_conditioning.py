"""DiLM generator class conditioning on the dev split: the share of held-out texts to which a trained generator
gives the lowest loss under their own class token (Generator.conditioning_accuracy; majority class printed too).

Usage: HF_HUB_OFFLINE=1 python results/quick-sst2-dilm-tune/probes/dilm_conditioning.py N [STAGE_DIR ...]
       (N dev texts; with no STAGE_DIR, every cached stage-1 and stage-2 generator of SST-2 is checked)
"""
import glob, os, sys, time
from dilmbench.methods.dilm import Generator
from dilmbench.tasks import TASKS, load_task_data
data = load_task_data(TASKS["sst2"], "embedded")
n = int(sys.argv[1])
texts, labels = data.texts("dev")[:n], data.labels("dev")[:n]
root = os.path.expanduser(os.environ.get("DILMBENCH_CACHE", "~/.cache/dilmbench")) + "/dilm/sst2"
dirs = [os.path.join(d, "final") if os.path.isdir(os.path.join(d, "final")) else d for d in sys.argv[2:]] \
    or sorted(glob.glob(root + "/*/final"))
for path in dirs:
    name = "/".join(os.path.normpath(path).split("/")[-2:])
    t = time.time()
    g = Generator.from_pretrained(path, 2, add_tokens=not path.endswith("final"))
    print(f"{name}: conditioning accuracy on {n} dev texts {100*g.conditioning_accuracy(texts, labels, 64, 'cpu'):.1f}% "
          f"(majority {100*max(labels.mean(), 1-labels.mean()):.1f}%) [{time.time()-t:.0f} s]", flush=True)
