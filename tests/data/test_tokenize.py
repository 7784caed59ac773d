"""Tokenizers and the vocabulary: round trips through ids and through JSON (a bundle's vocab.json)."""
import json

import pytest

from rnnlab.data.tokenize import (
    BPETokenizer,
    CharTokenizer,
    Tokenizer,
    WordTokenizer,
    tokenizer_from_json,
    train_tokenizer,
)
from rnnlab.data.vocab import Vocab

TEXT = "The cat sat on the mat.\n\n    def f(x):\n        return x + 1  # done\nThe end, the end!\t"
UNICODE = "Héllo wörld — naïve café ✓\n"


def _json_round_trip(tok):
    return tokenizer_from_json(json.loads(json.dumps(tok.to_json())))


def test_vocab_ids_unk_and_json():
    v = Vocab(["a", "b", "a"], specials=["<eos>"])
    assert len(v) == 4 and v.unk_id == 0 and v.id("<unk>") == 0 and v.id("<eos>") == 1
    assert v.encode(["a", "b", "zzz"]) == [2, 3, 0]
    assert v.decode([2, 3, 0]) == ["a", "b", "<unk>"]
    assert Vocab.from_json(json.loads(json.dumps(v.to_json()))) == v
    with pytest.raises(ValueError, match="token id must be in"):
        v.decode([4])


def test_vocab_from_counts_keeps_the_most_frequent_deterministically():
    v = Vocab.from_counts({"x": 3, "b": 2, "a": 2, "rare": 1}, max_size=4)
    assert v.decode([1, 2, 3]) == ["x", "a", "b"]  # ties broken by the token
    assert "rare" not in v
    with pytest.raises(ValueError, match="max_size"):
        Vocab.from_counts({"x": 1}, max_size=1)


@pytest.mark.parametrize("kind", ["char", "word", "bpe"])
def test_round_trip_on_training_text(kind):
    tok = train_tokenizer(kind, [TEXT], vocab_size=300)
    assert isinstance(tok, Tokenizer) and tok.kind == kind
    ids = tok.encode(TEXT)
    assert all(isinstance(i, int) and 0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == TEXT


@pytest.mark.parametrize("kind", ["char", "word", "bpe"])
def test_json_round_trip_gives_the_same_ids(kind):
    tok = train_tokenizer(kind, [TEXT, UNICODE], vocab_size=300)
    again = _json_round_trip(tok)
    assert type(again) is type(tok) and again.vocab_size == tok.vocab_size
    for text in (TEXT, UNICODE, "unseen words: zebra!"):
        assert again.encode(text) == tok.encode(text)
        assert again.decode(tok.encode(text)) == tok.decode(tok.encode(text))


def test_char_unknown_characters_map_to_unk():
    tok = CharTokenizer.train(["abc"])
    assert tok.vocab_size == 4
    assert tok.encode("abz") == [1, 2, 0]
    assert tok.decode(tok.encode("abz")) == "ab<unk>"


def test_word_tokens_keep_whitespace_and_cap_the_vocabulary():
    assert WordTokenizer.split("a  b,\n c") == ["a", " ", " b", ",", "\n", " c"]
    tok = WordTokenizer.train([" a a a b b c"], vocab_size=3)  # unk + the two most frequent
    assert tok.vocab_size == 3 and tok.decode(tok.encode(" a b c")) == " a b<unk>"


def test_bpe_covers_every_byte():
    tok = BPETokenizer.train([TEXT], vocab_size=300)
    assert tok.decode(tok.encode(UNICODE)) == UNICODE  # never seen in training, still exact
    with pytest.raises(ValueError, match="at least 257"):
        BPETokenizer.train([TEXT], vocab_size=100)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="tokenizer must be one of"):
        train_tokenizer("sentencepiece", [TEXT])
    with pytest.raises(ValueError, match="kind"):
        tokenizer_from_json({"vocab": {}})
    with pytest.raises(TypeError, match="takes a str"):
        CharTokenizer.train(["ab"]).encode(b"ab")
