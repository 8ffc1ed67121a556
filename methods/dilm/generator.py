"""DiLM's generator: a causal LM with one start token per class, a pair separator and a pad token of its own.

An example is ``<class_c> text1 (<sep> text2) <eos>``. Following the reference implementation (arumaekawa/DiLM,
src/generator.py and src/data.py), an example's loss is the sum of its tokens' cross-entropy divided by the batch's
padded length (padded to a multiple of 8, minus the shifted first position), so long examples weigh more than short
ones; ``loss_norm="mean"`` (each example's own token mean) is kept for comparison.
"""
from __future__ import annotations

from contextlib import nullcontext

import numpy as np

from dilmbench.errors import DilmbenchError

CLASS_INITS = ("eos", "label_words")
LOSS_NORMS = ("reference", "mean")
PACK_ROW_TOKENS = 256  # a packed row's tokens (packed_example_losses)
PAD_MULTIPLE = 8  # the reference's DataCollatorForLanguageModeling(pad_to_multiple_of=8)


def reference_padded_length(lengths) -> int:
    """The reference's padded batch length: the longest sequence, rounded up to a multiple of 8."""
    longest = max(lengths)
    return -(-longest // PAD_MULTIPLE) * PAD_MULTIPLE


def label_word(name: str) -> str:
    """A task's label name as a word the generator knows: 'not_duplicate' -> 'not duplicate'."""
    return name.replace("_", " ")


class Generator:
    SEP = "<sep>"
    PAD = "<pad>"

    @staticmethod
    def class_tokens(num_labels: int) -> list[str]:
        return [f"<class_{c}>" for c in range(num_labels)]

    def __init__(self, model, tokenizer, num_labels: int, loss_norm: str = "reference", bos_prefix: bool = False):
        if loss_norm not in LOSS_NORMS:
            raise DilmbenchError(f"loss_norm must be one of {LOSS_NORMS}, got '{loss_norm}'")
        self.model, self.tok, self.num_labels, self.loss_norm = model, tokenizer, num_labels, loss_norm
        self.eos_id = tokenizer.eos_token_id
        # the model's start token (end-of-text where it has none) before the class token (off in the reference):
        # position 0 of a causal LM tends to act as an attention sink whose content later positions barely read, so
        # the class token moves to position 1
        start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else self.eos_id
        self.prefix = [start] if bos_prefix else []
        self.class_ids = tokenizer.convert_tokens_to_ids(self.class_tokens(num_labels))
        self.sep_id = tokenizer.convert_tokens_to_ids(self.SEP)
        self.pad_id = tokenizer.pad_token_id
        # the precision of inference passes (sampling, class likelihoods): device -> a context (the method sets it)
        self.amp = lambda device: nullcontext()
        self.pack = False  # losses on packed rows where the model can be packed (the method's lm_pack)

    @property
    def new_token_ids(self) -> list[int]:
        """Rows added to the pretrained vocabulary: the class tokens, the separator and the pad token."""
        return sorted({*self.class_ids, self.sep_id, self.pad_id})

    @classmethod
    def from_pretrained(cls, model_id: str, num_labels: int, add_tokens: bool = True, class_init: str = "eos",
                        label_names: tuple[str, ...] | None = None, loss_norm: str = "reference",
                        bos_prefix: bool | None = None):
        """Load a causal LM; on first load add the class start tokens, the pair separator and a pad token.

        Class tokens start as the end-of-text row (``class_init="eos"``, the reference's choice) or as the mean
        embedding of their label word's tokens (``"label_words"``, e.g. " positive"). The separator and pad start at
        the mean of the pretrained rows: they are never copies of end-of-text, so the pad cannot pass for it."""
        import torch
        from transformers import AutoModelForCausalLM

        from dilmbench.models import load_pretrained, load_tokenizer

        if class_init not in CLASS_INITS:
            raise DilmbenchError(f"class_token_init must be one of {CLASS_INITS}, got '{class_init}'")
        tok = load_tokenizer(model_id)
        model = load_pretrained(AutoModelForCausalLM, model_id, dtype=torch.float32)
        if tok.eos_token_id is None:
            raise DilmbenchError(f"generator '{model_id}' has no end-of-text token")
        new = cls.class_tokens(num_labels) + [cls.SEP]
        if add_tokens and any(t not in tok.get_vocab() for t in new):
            if class_init == "label_words" and (label_names is None or len(label_names) != num_labels):
                raise DilmbenchError("class_token_init 'label_words' needs the task's label names")
            tok.add_special_tokens({"additional_special_tokens": new})
            if tok.pad_token_id is None or tok.pad_token_id == tok.eos_token_id:
                tok.add_special_tokens({"pad_token": cls.PAD})
            old = model.get_input_embeddings().weight.shape[0]
            model.resize_token_embeddings(len(tok), mean_resizing=False)
            out = model.get_output_embeddings()
            tables = [model.get_input_embeddings().weight]
            if out is not None and out.weight.data_ptr() != tables[0].data_ptr():
                tables.append(out.weight)
            class_ids = tok.convert_tokens_to_ids(cls.class_tokens(num_labels))
            words = ([tok(" " + label_word(n), add_special_tokens=False)["input_ids"] for n in label_names]
                     if class_init == "label_words" else None)
            with torch.no_grad():
                for table in tables:
                    mean = table[:old].mean(0)
                    for i in range(old, table.shape[0]):
                        table[i].copy_(mean)  # separator and pad
                    for c, i in enumerate(class_ids):
                        table[i].copy_(table[tok.eos_token_id] if words is None else table[words[c]].mean(0))
        model.config.pad_token_id = tok.pad_token_id
        # the example layout travels with the weights (saved in the model's config), so any loader of a checkpoint,
        # a benchmark script included, encodes and samples as the generator was trained; None: the saved choice
        if bos_prefix is None:
            bos_prefix = bool(getattr(model.config, "dilm_bos_prefix", False))
        model.config.dilm_bos_prefix = bos_prefix
        return cls(model, tok, num_labels, loss_norm=loss_norm, bos_prefix=bos_prefix)

    def encode_example(self, texts: tuple[str, ...], label: int, max_length: int | None) -> list[int]:
        """([eos]) [class_c] text1 (<sep> text2) <eos>, truncated to max_length (the eos kept; None: none)."""
        ids = self.prefix + [self.class_ids[label]]
        for j, t in enumerate(texts):
            if j:
                ids.append(self.sep_id)
            ids.extend(self.tok(t, add_special_tokens=False)["input_ids"])
        if max_length is not None:
            ids = ids[: max_length - 1]
        return ids + [self.eos_id]

    def decode(self, ids: list[int], n_fields: int) -> tuple[str, ...] | None:
        """Generated ids (after the class token) -> texts; None if a pair lacks its separator or a text is empty."""
        if self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id)]
        parts, cur = [], []
        for t in ids:
            if t == self.sep_id:
                parts.append(cur)
                cur = []
            else:
                cur.append(t)
        parts.append(cur)
        if len(parts) < n_fields:
            return None
        texts = tuple(self.tok.decode(p, skip_special_tokens=True).strip() for p in parts[:n_fields])
        return texts if all(texts) else None

    def batch_tensors(self, seqs: list[list[int]], device):
        import torch

        n = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), n), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), n), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s)
            mask[i, : len(s)] = 1
        return ids.to(device), mask.to(device)

    def example_losses(self, seqs: list[list[int]], device, padded_length: int | None = None):
        """Per-example loss of everything after the class token (texts, separator, eos).

        ``loss_norm="reference"``: summed token cross-entropy / (padded length - 1), the padded length being the
        whole batch's (``padded_length``; default: these sequences' own, rounded up to a multiple of 8), so a batch
        run as length-sorted micro-batches gets the same losses. ``"mean"``: each example's token mean."""
        import torch.nn.functional as F

        ids, mask = self.batch_tensors(seqs, device)
        logits = self.model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        target, tmask = ids[:, 1:], mask[:, 1:].float()
        if self.prefix:
            tmask[:, : len(self.prefix)] = 0  # the class token is given, not predicted
        summed = (F.cross_entropy(logits.transpose(1, 2), target, reduction="none") * tmask).sum(1)
        if self.loss_norm == "mean":
            return summed / tmask.sum(1)
        return summed / ((padded_length or reference_padded_length([len(s) for s in seqs])) - 1)

    # decoders whose causal LM is base model + output embedding, and whose base model builds the block-diagonal causal
    # mask of packed texts itself from position_ids that restart at 0 (transformers' masking_utils, >= 4.56); tested
    # equal to the padded losses in float32 (tests/test_dilm.py)
    PACKABLE = ("llama", "gpt2")

    def can_pack(self) -> bool:
        return getattr(self.model.config, "model_type", None) in self.PACKABLE

    def packs(self) -> bool:
        return self.pack and self.can_pack()

    def training_attention(self) -> "_Attention":
        """While a packed generator trains, eager attention (its mask the packed rows' block-diagonal causal one): on
        a CPU, torch's sdpa forward + backward at these small shapes is several times slower than the eager math
        (results/benchmarks/decoder_attention.txt); a packed stage-1 step 0.55 s against 0.63 s with sdpa
        (SmolLM2, 2 threads: results/benchmarks/dilm_lm_step.txt). ``.restore()`` sets back what the model had."""
        return _Attention(self.model, "eager" if self.packs() else None)

    def losses(self, seqs: list[list[int]], device, padded_length: int | None = None):
        """example_losses, or packed_example_losses where the generator packs (``pack`` on, a model that can be)."""
        if self.packs():
            return self.packed_example_losses(seqs, device, padded_length)
        return self.example_losses(seqs, device, padded_length)

    def packed_example_losses(self, seqs: list[list[int]], device, padded_length: int | None = None,
                              row_tokens: int = PACK_ROW_TOKENS):
        """example_losses' numbers without the padding's compute: the sequences go end to end into rows of at most
        ``row_tokens`` tokens (longest first; a longer one alone), each with its own positions from 0, so that the
        base model's attention stays causal and within each sequence; the output embedding (a tenth to a fifth of a
        small LM's FLOPs) runs only at the positions whose next token is predicted. Normalised as example_losses
        normalises (the padded batch's length under ``loss_norm="reference"``)."""
        import torch
        import torch.nn.functional as F

        from dilmbench.fastpath import pack_rows

        lens = [len(s) for s in seqs]
        rows = pack_rows(lens, np.arange(len(seqs)), row_tokens)
        width = max(sum(lens[i] for i in r) for r in rows)
        ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        pos = np.zeros((len(rows), width), dtype=np.int64)
        at_r, at_c, tgt, owner = [], [], [], []
        skip = len(self.prefix)  # the class token is given, not predicted
        for r, row in enumerate(rows):
            at = 0
            for i in row:
                n = lens[i]
                ids[r, at:at + n] = seqs[i]
                pos[r, at:at + n] = np.arange(n)
                p = np.arange(skip, n - 1)
                at_r.extend([r] * len(p))
                at_c.extend(at + p)
                tgt.extend(seqs[i][skip + 1:n])
                owner.extend([i] * len(p))
                at += n
            pos[r, at:] = np.arange(width - at)  # the row's padding: a sequence of its own, never read
        t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.int64), device=device)  # noqa: E731
        hidden = self.model.base_model(input_ids=t(ids), position_ids=t(pos), use_cache=False).last_hidden_state
        logits = self.model.get_output_embeddings()(hidden[t(at_r), t(at_c)]).float()
        ce = F.cross_entropy(logits, t(tgt), reduction="none")
        summed = torch.zeros(len(seqs), dtype=ce.dtype, device=ce.device).index_add(0, t(owner), ce)
        if self.loss_norm == "mean":
            counts = np.bincount(np.asarray(owner, dtype=np.int64), minlength=len(seqs))
            return summed / torch.as_tensor(counts, dtype=ce.dtype, device=ce.device)
        return summed / ((padded_length or reference_padded_length(lens)) - 1)

    def class_log_likelihoods(self, texts, max_length: int | None, device, batch_size: int = 32) -> np.ndarray:
        """(n texts, n classes): each text's summed token log-likelihood (text, separator, eos) after each class
        token, in length-sorted micro-batches."""
        import torch

        from dilmbench.finetune import micro_batches

        self.model.eval()
        ll = np.zeros((len(texts), self.num_labels))
        saved, self.loss_norm = self.loss_norm, "reference"
        try:
            with torch.inference_mode():
                for c in range(self.num_labels):
                    seqs = [self.encode_example(t, c, max_length) for t in texts]
                    longest = max(len(s) for s in seqs)
                    for part in micro_batches([len(s) for s in seqs], batch_size * longest):
                        part_seqs = [seqs[j] for j in part]
                        padded = reference_padded_length([len(s) for s in part_seqs])
                        # reference losses are sums / (padded - 1): undo the division to get the summed CE
                        with self.amp(device):
                            losses = self.losses(part_seqs, device, padded)
                        ll[part, c] = -(losses.float().cpu().numpy() * (padded - 1))
        finally:
            self.loss_norm = saved
        return ll

    def conditioning_accuracy(self, texts, labels, max_length: int | None, device, batch_size: int = 32) -> float:
        """How well the class tokens condition the generator: the share of examples whose own class gives them the
        highest likelihood (a generative classifier; chance = 1 / classes). Meant for the dev split: it needs no
        learner, so it is a cheap signal for choosing stage 1's settings. (An example has the same length under every
        class, so either loss normalisation would pick the same class.)"""
        ll = self.class_log_likelihoods(texts, max_length, device, batch_size)
        return float((ll.argmax(1) == np.asarray(labels)).mean())

    def class_margins(self, texts: list[tuple[str, ...]], label: int, device, batch_size: int = 32) -> np.ndarray:
        """How much more likely each text is under class ``label`` than under the likeliest other class, in nats:
        log p(x | label) - max over c != label of log p(x | c), from the summed token log-likelihoods (the text, its
        separator and eos). Positive: the generator itself would classify the text as ``label``."""
        ll = self.class_log_likelihoods(texts, None, device, batch_size)
        return ll[:, label] - np.delete(ll, label, axis=1).max(1)

    def sample(self, label: int, n: int, n_fields: int, seed: int, top_p: float, top_k: int, max_new_tokens: int,
               batch_size: int, device, min_acceptance: float = 0.02,
               stats: dict | None = None) -> tuple[list[tuple[str, ...]], list[list[int]]]:
        """n sampled examples of a class. Every batch is a full batch; outputs that do not decode (a pair without its
        separator, an empty text) are dropped. Once 4 batches have been drawn, a measured acceptance rate below
        ``min_acceptance`` stops with an error that gives the rate. ``stats``, if given, receives the samples drawn
        and the usable ones among them."""
        import torch

        self.model.eval()
        texts, seqs = [], []
        gen = torch.Generator(device="cpu").manual_seed(seed)
        banned = [[c] for c in self.class_ids] + ([[self.pad_id]] if self.pad_id is not None else [])
        drawn = 0
        while len(texts) < n:
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
            start = torch.tensor([self.prefix + [self.class_ids[label]]] * batch_size, dtype=torch.long, device=device)
            with torch.inference_mode(), self.amp(device):
                out = self.model.generate(input_ids=start, attention_mask=torch.ones_like(start), do_sample=True,
                                          top_p=top_p, top_k=top_k, max_new_tokens=max_new_tokens,
                                          eos_token_id=self.eos_id, pad_token_id=self.pad_id, bad_words_ids=banned)
            drawn += batch_size
            head = len(self.prefix) + 1
            for row in out.tolist():
                body = row[head:]
                t = self.decode(body, n_fields)
                if t is None:
                    continue
                end = body.index(self.eos_id) + 1 if self.eos_id in body else len(body)
                texts.append(t)
                seqs.append(row[:head] + body[:end])
            rate = len(texts) / drawn
            if drawn >= 4 * batch_size and rate < min_acceptance and len(texts) < n:
                raise DilmbenchError(f"generator writes usable examples of class {label} at a rate of {rate:.1%} "
                                     f"({len(texts)} of {drawn} samples; minimum {min_acceptance:.0%}): train it longer")
        if stats is not None:
            stats.update(drawn=drawn, usable=len(texts))
        return texts[:n], seqs[:n]


class _Attention:
    """A model's attention implementation set for a while (None: left as it is)."""

    def __init__(self, model, name: str | None):
        self.model, self.saved = model, getattr(model.config, "_attn_implementation", None)
        if name is not None and name != self.saved:
            model.set_attn_implementation(name)
        else:
            self.saved = None

    def restore(self) -> None:
        if self.saved is not None:
            self.model.set_attn_implementation(self.saved)
            self.saved = None
