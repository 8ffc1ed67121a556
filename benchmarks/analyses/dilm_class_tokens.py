"""How far a trained DiLM generator's class start tokens moved apart: L2 distances between the <class_c> input
embeddings, and from the end-of-text row they were initialised from, against a typical embedding-row norm.

Usage: python benchmarks/analyses/dilm_class_tokens.py STAGE_DIR [...]   (a stage folder or its final/ checkpoint)
"""
import os
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from dilmbench.methods.dilm import Generator

for d in sys.argv[1:]:
    path = os.path.join(d, "final") if os.path.isdir(os.path.join(d, "final")) else d
    tok = AutoTokenizer.from_pretrained(path)
    vocab = tok.get_vocab()
    names = Generator.class_tokens(sum(t in vocab for t in Generator.class_tokens(len(vocab))))
    emb = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).get_input_embeddings().weight.detach()
    rows = emb[tok.convert_tokens_to_ids(names)]
    eos = emb[tok.eos_token_id]
    pair = " ".join(f"|{a}-{b}| {(rows[i] - rows[j]).norm():.4f}" for i, a in enumerate(names)
                    for j, b in enumerate(names) if i < j)
    print(f"{os.path.normpath(path)}: {pair}; from eos: " + " ".join(f"{(r - eos).norm():.4f}" for r in rows)
          + f"; eos row norm {eos.norm():.3f}, mean row norm {emb.norm(dim=1).mean():.3f}")
