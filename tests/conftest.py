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


def load_script(rel: str):
    """A repository script (benchmarks/...) imported as a module, for the tests that call its functions."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / rel
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


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


@pytest.fixture(scope="session")
def tiny_gpt_ctx48(tmp_path_factory):
    """The tiny GPT-2 with a context of 48 tokens: the fixture's SST-2 prompts fit it at DPC 1, never at DPC 4."""
    return _save_tiny_gpt(tmp_path_factory.mktemp("tiny-gpt-ctx48"), n_embd=32, n_head=2, n_positions=48)


def _save_tiny_gpt(d, n_embd: int, n_head: int, n_positions: int = 512) -> str:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    words = ["<|endoftext|>", "<unk>"] + sorted(set(POS + NEG + FILLER))
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|endoftext|>", unk_token="<unk>",
                                  bos_token="<|endoftext|>")
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(words), n_positions=n_positions, n_embd=n_embd, n_layer=2, n_head=n_head,
                               bos_token_id=0, eos_token_id=0)).save_pretrained(d)
    tok.save_pretrained(d)
    return str(d)


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory, tiny_gpt):
    """A 2-layer Llama (grouped-query attention: 4 heads over 2 key/value heads, no attention dropout, as SmolLM2's
    family) with the tiny GPT-2's word-level tokenizer, saved like a hub model."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    d = tmp_path_factory.mktemp("tiny-llama")
    tok = AutoTokenizer.from_pretrained(tiny_gpt)
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                                 bos_token_id=0, eos_token_id=0)).save_pretrained(d)
    tok.save_pretrained(d)
    return str(d)


@pytest.fixture(scope="session")
def tiny_gemma(tmp_path_factory, tiny_gpt):
    """A 2-layer Gemma-3 text model (one key/value head, a sliding window of 6 tokens on its first layer, as
    gemma-3-270m alternates local and global layers) with the tiny GPT-2's word-level tokenizer."""
    import torch
    from transformers import AutoTokenizer, Gemma3ForCausalLM, Gemma3TextConfig

    d = tmp_path_factory.mktemp("tiny-gemma")
    tok = AutoTokenizer.from_pretrained(tiny_gpt)
    torch.manual_seed(0)
    cfg = Gemma3TextConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=1, head_dim=16, max_position_embeddings=128,
                           sliding_window=6, layer_types=["sliding_attention", "full_attention"],
                           bos_token_id=0, eos_token_id=0, pad_token_id=None)
    Gemma3ForCausalLM(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    return str(d)


def _fixture_corpus():
    return [" ".join(POS + NEG + FILLER)] * 3 + POS + NEG + FILLER


@pytest.fixture(scope="session")
def tiny_roberta(tmp_path_factory):
    """A 2-layer RoBERTa with a byte-level BPE vocabulary trained on the fixture words (RoBERTa's tokenizer family)."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from tokenizers.processors import RobertaProcessing
    from transformers import RobertaConfig, RobertaForSequenceClassification, RobertaTokenizerFast

    d = tmp_path_factory.mktemp("tiny-roberta")
    bpe = ByteLevelBPETokenizer(add_prefix_space=True)
    bpe.train_from_iterator(_fixture_corpus(), vocab_size=300, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe._tokenizer.post_processor = RobertaProcessing(("</s>", bpe.token_to_id("</s>")), ("<s>", bpe.token_to_id("<s>")))
    tok = RobertaTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                               cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>")
    torch.manual_seed(0)
    cfg = RobertaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=130, pad_token_id=tok.pad_token_id,
                        type_vocab_size=1, num_labels=2)
    RobertaForSequenceClassification(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    return str(d)


@pytest.fixture(scope="session")
def tiny_xlnet(tmp_path_factory):
    """A 2-layer XLNet with a SentencePiece-style unigram vocabulary: left padding, <sep> <cls> at the end."""
    import torch
    from tokenizers import SentencePieceUnigramTokenizer
    from tokenizers.processors import TemplateProcessing
    from transformers import XLNetConfig, XLNetForSequenceClassification, XLNetTokenizerFast

    d = tmp_path_factory.mktemp("tiny-xlnet")
    sp = SentencePieceUnigramTokenizer()
    sp.train_from_iterator(_fixture_corpus(), vocab_size=120, unk_token="<unk>",
                           special_tokens=["<unk>", "<s>", "</s>", "<cls>", "<sep>", "<pad>", "<mask>"])
    sp.post_processor = TemplateProcessing(
        single="$A:0 <sep>:0 <cls>:2", pair="$A:0 <sep>:0 $B:1 <sep>:1 <cls>:2",
        special_tokens=[("<sep>", sp.token_to_id("<sep>")), ("<cls>", sp.token_to_id("<cls>"))])
    tok = XLNetTokenizerFast(tokenizer_object=sp._tokenizer, unk_token="<unk>", sep_token="<sep>", cls_token="<cls>",
                             pad_token="<pad>", mask_token="<mask>", bos_token="<s>", eos_token="</s>",
                             padding_side="left")
    torch.manual_seed(0)
    cfg = XLNetConfig(vocab_size=len(tok), d_model=32, n_layer=2, n_head=2, d_inner=64, num_labels=2,
                      pad_token_id=tok.pad_token_id)
    XLNetForSequenceClassification(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    return str(d)
