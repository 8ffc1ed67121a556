"""Stand-ins for the paper preset's models, so the unchanged preset runs where the hub's weights are not at hand.

A stand-in has the real model's configuration (dilmbench.cost.KNOWN_CONFIGS: the hub's config.json values) and
random weights, and a tokenizer of the real one's kind with exactly its vocabulary size: WordPiece (uncased) for BERT,
byte-level BPE for RoBERTa, GPT-2 and OPT, a SentencePiece-style unigram for XLNet. A tokenizer is trained on the
given texts, then topped up with unused tokens to the real size; for BERT the vocabulary of
sentence-transformers/all-MiniLM-L6-v2 is bert-base-uncased's own, and is used when it is in the local cache.
:func:`build_standins` writes the folders and a model map; pointing $DILMBENCH_MODEL_MAP at the map makes every load
of those ids take the stand-ins (dilmbench.models.resolve_model), and their results record the folders' 'local:'
revisions, so they can never pass for results of the real weights.

What a stand-in shows: that every stage runs at the real shapes, lengths and batch sizes, and what it costs in time
and memory. What it cannot show: any score (random weights), or how long a trained generator's texts are (an
untrained one writes to the length cap).
"""
from __future__ import annotations

import json
from pathlib import Path

from .cost import KNOWN_CONFIGS
from .errors import DilmbenchError
from .record import slug

# model id -> (tokenizer kind, what to save: "encoder" weights or a "causal" LM)
STANDINS = {
    "bert-base-uncased": ("wordpiece", "encoder"),
    "bert-large-uncased": ("wordpiece", "encoder"),
    "roberta-base": ("roberta", "encoder"),
    "xlnet-base-cased": ("xlnet", "encoder"),
    "gpt2": ("gpt2", "causal"),
    "gpt2-xl": ("gpt2", "causal"),
    "facebook/opt-2.7b": ("opt", "causal"),
    "meta-llama/Llama-2-7b-hf": ("llama", "causal"),
}
# the real tokenizers' lengths (len(tokenizer)), where they differ from the config's vocab_size (OPT pads its
# embedding to 50,272 rows; its tokenizer has 50,265 entries)
TOKENIZER_SIZE = {"facebook/opt-2.7b": 50265}
MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def _top_up(tok, size: int):
    """Unused tokens added until len(tok) == size (a stand-in's vocabulary has the real one's size)."""
    missing = size - len(tok)
    if missing < 0:
        raise DilmbenchError(f"stand-in tokenizer has {len(tok)} entries, more than the real {size}")
    if missing:
        tok.add_tokens([f"<|unused{i}|>" for i in range(missing)])
    return tok


def build_tokenizer(kind: str, corpus: list[str], size: int):
    """A fast tokenizer of the given kind with exactly ``size`` entries, trained on ``corpus``."""
    from tokenizers import ByteLevelBPETokenizer, SentencePieceUnigramTokenizer
    from tokenizers.processors import RobertaProcessing, TemplateProcessing

    train = min(size, 8000)  # merges a few thousand texts support; the rest is topped up
    if kind == "wordpiece":
        from transformers import AutoTokenizer, BertTokenizerFast

        try:
            from .models import resolve_model

            tok = AutoTokenizer.from_pretrained(resolve_model(MINILM), local_files_only=True)
            if len(tok) == size:
                return tok
        except Exception:
            pass
        from tokenizers import BertWordPieceTokenizer

        wp = BertWordPieceTokenizer(lowercase=True)
        wp.train_from_iterator(corpus, vocab_size=train, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
        return _top_up(BertTokenizerFast(tokenizer_object=wp._tokenizer, do_lower_case=True), size)
    if kind in ("roberta", "gpt2", "opt"):
        from transformers import PreTrainedTokenizerFast, RobertaTokenizerFast

        specials = {"roberta": ["<s>", "<pad>", "</s>", "<unk>", "<mask>"], "gpt2": ["<|endoftext|>"],
                    "opt": ["<s>", "<pad>", "</s>", "<unk>"]}[kind]
        bpe = ByteLevelBPETokenizer(add_prefix_space=kind == "roberta")
        bpe.train_from_iterator(corpus, vocab_size=train, min_frequency=1, special_tokens=specials)
        if kind == "roberta":
            bpe._tokenizer.post_processor = RobertaProcessing(("</s>", bpe.token_to_id("</s>")),
                                                              ("<s>", bpe.token_to_id("<s>")))
            tok = RobertaTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<s>", eos_token="</s>",
                                       sep_token="</s>", cls_token="<s>", unk_token="<unk>", pad_token="<pad>",
                                       mask_token="<mask>")
        elif kind == "gpt2":
            tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<|endoftext|>",
                                          eos_token="<|endoftext|>", unk_token="<|endoftext|>")
        else:  # OPT: GPT-2's BPE, </s> before every text
            bpe._tokenizer.post_processor = TemplateProcessing(single="</s> $A", pair="</s> $A $B",
                                                               special_tokens=[("</s>", bpe.token_to_id("</s>"))])
            tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="</s>", eos_token="</s>",
                                          unk_token="<unk>", pad_token="<pad>")
        return _top_up(tok, size)
    if kind in ("xlnet", "llama"):
        from transformers import PreTrainedTokenizerFast, XLNetTokenizerFast

        specials = (["<unk>", "<s>", "</s>", "<cls>", "<sep>", "<pad>", "<mask>"] if kind == "xlnet"
                    else ["<unk>", "<s>", "</s>"])
        sp = SentencePieceUnigramTokenizer()
        sp.train_from_iterator(corpus, vocab_size=train, unk_token="<unk>", special_tokens=specials)
        if kind == "xlnet":
            sp.post_processor = TemplateProcessing(
                single="$A:0 <sep>:0 <cls>:2", pair="$A:0 <sep>:0 $B:1 <sep>:1 <cls>:2",
                special_tokens=[("<sep>", sp.token_to_id("<sep>")), ("<cls>", sp.token_to_id("<cls>"))])
            tok = XLNetTokenizerFast(tokenizer_object=sp._tokenizer, unk_token="<unk>", sep_token="<sep>",
                                     cls_token="<cls>", pad_token="<pad>", mask_token="<mask>", bos_token="<s>",
                                     eos_token="</s>", padding_side="left")
        else:
            sp.post_processor = TemplateProcessing(single="<s> $A", pair="<s> $A $B",
                                                   special_tokens=[("<s>", sp.token_to_id("<s>"))])
            tok = PreTrainedTokenizerFast(tokenizer_object=sp._tokenizer, bos_token="<s>", eos_token="</s>",
                                          unk_token="<unk>")
        return _top_up(tok, size)
    raise DilmbenchError(f"no stand-in tokenizer of kind '{kind}'")


def standin_config(model_id: str, tok):
    """The real configuration, its special-token ids those of the stand-in tokenizer."""
    from transformers import AutoConfig

    known = dict(KNOWN_CONFIGS[model_id])
    mtype = known.pop("model_type")
    for key, token in (("pad_token_id", tok.pad_token), ("bos_token_id", tok.bos_token),
                       ("eos_token_id", tok.eos_token)):
        if key in known or token is not None:
            known[key] = tok.convert_tokens_to_ids(token) if token is not None else None
    return AutoConfig.for_model(mtype, **known)


def build_standin(model_id: str, out: Path, corpus: list[str], dtype: str = "float32", seed: int = 0) -> Path:
    """One stand-in folder (weights in ``dtype``, tokenizer); kept if it is already there."""
    import torch
    from transformers import AutoModel, AutoModelForCausalLM

    if model_id not in STANDINS:
        raise DilmbenchError(f"no stand-in for '{model_id}'; known: {', '.join(STANDINS)}")
    folder = out / slug(model_id)
    if (folder / "config.json").is_file() and (folder / "tokenizer_config.json").is_file():
        return folder
    kind, what = STANDINS[model_id]
    tok = build_tokenizer(kind, corpus, TOKENIZER_SIZE.get(model_id, KNOWN_CONFIGS[model_id]["vocab_size"]))
    cfg = standin_config(model_id, tok)
    torch.manual_seed(seed)
    cls = AutoModelForCausalLM if what == "causal" else AutoModel
    model = cls.from_config(cfg, dtype=getattr(torch, dtype))
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    del model
    return folder


def build_standins(model_ids: list[str], out: str | Path, corpus: list[str], dtypes: dict | None = None) -> Path:
    """Stand-ins for ``model_ids`` under ``out`` and ``out``/model_map.json naming them by their ids; -> the map."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    mapping = {}
    for model_id in model_ids:
        folder = build_standin(model_id, out, corpus, (dtypes or {}).get(model_id, "float32"))
        mapping[model_id] = folder.name
    path = out / "model_map.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    path.write_text(json.dumps({**old, **mapping}, indent=1) + "\n")
    return path
