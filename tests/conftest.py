"""Fixtures the tests make themselves: a tiny BERT (built from a config), GLUE-layout parquet data for all three
tasks, and an isolated cache. No network and no downloaded model is needed."""
import os
import random as pyrandom

import pandas as pd
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

POS = "good great fine lovely superb moving charming fun brilliant warm".split()
NEG = "bad awful dull boring weak tedious poor flat ugly messy".split()
FILLER = "the movie film story cast plot is was a an and it this that with".split()
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _sentence(rng, words):
    return " ".join(rng.choice(FILLER) for _ in range(rng.randint(1, 6))) + " " + " ".join(rng.choice(words) for _ in range(rng.randint(1, 3)))


def make_glue_dir(root, n_train=120, n_eval=40, seed=0):
    rng = pyrandom.Random(seed)
    for cfg, splits in (("sst2", ("train", "validation")), ("qqp", ("train", "validation")),
                        ("mnli", ("train", "validation_matched"))):
        (root / cfg).mkdir(parents=True, exist_ok=True)
        for split in splits:
            n = n_train if split == "train" else n_eval
            rows = []
            for i in range(n):
                if cfg == "sst2":
                    y = i % 2
                    rows.append({"sentence": _sentence(rng, POS if y else NEG), "label": y, "idx": i})
                elif cfg == "qqp":
                    y = i % 2
                    a = _sentence(rng, POS)
                    rows.append({"question1": a, "question2": a if y else _sentence(rng, NEG), "label": y, "idx": i})
                else:
                    y = i % 3
                    p = _sentence(rng, POS)
                    h = p if y == 0 else (_sentence(rng, FILLER) if y == 1 else _sentence(rng, NEG))
                    rows.append({"premise": p, "hypothesis": h, "label": y, "idx": i})
            pd.DataFrame(rows).to_parquet(root / cfg / f"{split}-00000-of-00001.parquet")
    return root


@pytest.fixture(scope="session")
def glue_dir(tmp_path_factory):
    return make_glue_dir(tmp_path_factory.mktemp("glue"))


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    """A 2-layer, 32-wide BERT with a WordPiece vocab of the fixture words, saved like a hub model."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    d = tmp_path_factory.mktemp("tiny-bert")
    vocab = SPECIAL + sorted(set(POS + NEG + FILLER)) + list("abcdefghijklmnopqrstuvwxyz") + ["##" + c for c in "abcdefghijklmnopqrstuvwxyz"]
    (d / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(vocab_file=str(d / "vocab.txt"), do_lower_case=True)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128, num_labels=2)
    BertForSequenceClassification(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    return str(d)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DILMBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("DILMBENCH_DATA_DIR", raising=False)


@pytest.fixture(scope="session")
def tiny_gpt(tmp_path_factory):
    """A 2-layer, 32-wide GPT-2 with a word-level tokenizer over the fixture words, saved like a hub model."""
    return _save_tiny_gpt(tmp_path_factory.mktemp("tiny-gpt"), n_embd=32, n_head=2)


@pytest.fixture(scope="session")
def tiny_gpt_head64(tmp_path_factory):
    """The same tiny GPT-2 with 64-wide attention heads: vLLM's CPU attention kernels take no head size below 32."""
    return _save_tiny_gpt(tmp_path_factory.mktemp("tiny-gpt-h64"), n_embd=128, n_head=2)


def _save_tiny_gpt(d, n_embd: int, n_head: int) -> str:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    words = ["<|endoftext|>", "<unk>"] + sorted(set(POS + NEG + FILLER))
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|endoftext|>", unk_token="<unk>",
                                  bos_token="<|endoftext|>")
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(words), n_positions=512, n_embd=n_embd, n_layer=2, n_head=n_head,
                               bos_token_id=0, eos_token_id=0)).save_pretrained(d)
    tok.save_pretrained(d)
    return str(d)
