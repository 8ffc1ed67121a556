"""Stand-ins' tokenizers (dilmbench.rehearsal): the real one's kind, exactly its size, special tokens the config uses."""
import pytest

from conftest import FILLER, NEG, POS


@pytest.mark.parametrize("kind, size", [("roberta", 700), ("gpt2", 650), ("opt", 640), ("xlnet", 600),
                                        ("llama", 620), ("wordpiece", 30522)])
def test_standin_tokenizer_has_the_size_asked_and_encodes_text(kind, size, monkeypatch):
    from dilmbench.rehearsal import build_tokenizer

    monkeypatch.setattr("dilmbench.rehearsal.MINILM", "no/such-model")  # train WordPiece, as CI (no cache) does
    corpus = [" ".join(POS + NEG + FILLER)] * 5 + POS + NEG + FILLER
    tok = build_tokenizer(kind, corpus, size)
    assert len(tok) == size
    ids = tok("the film was good", "it was bad")["input_ids"]
    assert ids and max(ids) < size
    if kind == "xlnet":  # <sep> <cls> at the end, padding on the left, as XLNet's own tokenizer
        assert tok.convert_ids_to_tokens(ids[-1]) == "<cls>" and tok.padding_side == "left"
    if kind == "opt":
        assert tok.convert_ids_to_tokens(ids[0]) == "</s>"


def test_standin_config_is_the_real_shape_with_the_tokenizers_special_ids():
    from dilmbench.cost import KNOWN_CONFIGS
    from dilmbench.rehearsal import build_tokenizer, standin_config

    tok = build_tokenizer("roberta", [" ".join(POS + NEG + FILLER)] * 5, 50265)
    cfg = standin_config("roberta-base", tok)
    assert cfg.vocab_size == 50265 == KNOWN_CONFIGS["roberta-base"]["vocab_size"]
    assert cfg.hidden_size == 768 and cfg.num_hidden_layers == 12 and cfg.max_position_embeddings == 514
    assert cfg.pad_token_id == tok.pad_token_id and cfg.eos_token_id == tok.eos_token_id
