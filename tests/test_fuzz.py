"""Fuzzing the readers and the bundle loader: random bytes and lines, mutated bundles. Whatever comes in, the
result is data or one of the errors the CLI reports as a clear line (ValueError/DataError, TypeError,
FileNotFoundError): never another exception, never a hang (each example runs under an alarm), and never code run
(pickle and torch.load fail the test if the bundle loader reaches them)."""
import contextlib
import json
import pickle
import random
import shutil
import signal
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rnnlab.data.conll import read_tagged
from rnnlab.data.labelled import read_labelled
from rnnlab.data.pairs import read_pairs
from rnnlab.data.text import load_corpus
from rnnlab.structures import EncoderConfig, LanguageModel, LanguageModelConfig
from rnnlab.training import load_bundle, save_bundle

CLEAR = (ValueError, TypeError, FileNotFoundError)  # DataError is a ValueError
FUZZ = settings(max_examples=60, deadline=2000, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@contextlib.contextmanager
def no_hang(seconds: int = 10):
    """Fail instead of hanging: SIGALRM after ``seconds``."""
    def expired(signum, frame):
        raise AssertionError(f"no result after {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def read_or_clear_error(read, suffix: str, content: bytes):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"data{suffix}"
        path.write_bytes(content)
        with no_hang():
            try:
                read(path)
            except CLEAR:
                pass


# Lines built from the characters that matter to the formats: separators, quotes, braces, BIO tags, odd unicode.
PIECES = st.sampled_from(["\t", ",", '"', "'", " ", "{", "}", ":", "[", "]", "B-PER", "I-LOC", "O", "text", "label",
                          "\\", "\r", "\x00", "é", "\ufeff", "-DOCSTART-", "#", "null", "1", "\u2028"])
LINES = st.lists(st.lists(PIECES, max_size=8).map("".join), max_size=12).map(lambda ls: "\n".join(ls).encode())
CONTENT = st.one_of(st.binary(max_size=300), LINES)

READERS = {
    "text": (lambda p: load_corpus(p), ".txt"),
    "csv": (lambda p: read_labelled(p), ".csv"),
    "tsv": (lambda p: read_labelled(p), ".tsv"),
    "jsonl": (lambda p: read_labelled(p), ".jsonl"),
    "conll": (lambda p: read_tagged(p), ".conll"),
    "conll-plain": (lambda p: read_tagged(p, token_column=0, tag_column=1, scheme="plain"), ".conll"),
    "pairs": (lambda p: read_pairs(p), ".tsv"),
}


@pytest.mark.parametrize("reader", sorted(READERS))
@FUZZ
@given(content=CONTENT)
def test_readers_return_data_or_a_clear_error(reader, content):
    read, suffix = READERS[reader]
    read_or_clear_error(read, suffix, content)


# --- mutated bundles ------------------------------------------------------------------------------------------

_BUNDLE: dict = {}


def pristine_bundle() -> Path:
    """A tiny language-model bundle, written once per session."""
    if "path" not in _BUNDLE:
        folder = Path(tempfile.mkdtemp(prefix="rnnlab-fuzz-"))
        model = LanguageModel(LanguageModelConfig(vocab_size=6, embedding_size=4,
                                                  encoder=EncoderConfig(kind="lstm", hidden_size=4)))
        _BUNDLE["path"] = save_bundle(folder / "bundle", model, extra_config={"task": "textgen"},
                                      vocab={"kind": "char", "vocab": {"unk": "<unk>", "specials": [],
                                                                       "tokens": list("abcde")}})
    return _BUNDLE["path"]


SWAPS = [None, 0, -1, 2**40, 1.5, float("inf"), "x", "", [], [1, "a"], {}, {"a": 1}, True]


def _paths(value, prefix=()):
    """Every (path of keys) inside a JSON value."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, prefix + (i,))


def _swap(data, path, new):
    if not path:
        return new
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = new
    return data


def mutate(folder: Path, kind: str, rng: random.Random) -> None:
    files = sorted(f for f in folder.iterdir() if f.is_file())
    if kind == "swap":
        config = folder / "config.json"
        data = json.loads(config.read_text())
        path = rng.choice(list(_paths(data)))
        config.write_text(json.dumps(_swap(data, path, rng.choice(SWAPS))))
        return
    victim = rng.choice(files)
    raw = bytearray(victim.read_bytes())
    if kind == "truncate":
        victim.write_bytes(bytes(raw[: rng.randrange(len(raw) + 1)]))
    elif kind == "flip" and raw:
        for _ in range(rng.randint(1, 4)):
            raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
        victim.write_bytes(bytes(raw))
    elif kind == "delete":
        victim.unlink()


def _refuse(*args, **kwargs):
    raise AssertionError("the bundle loader tried to unpickle something")


@FUZZ
@given(kind=st.sampled_from(["swap", "swap", "flip", "truncate", "delete"]), seed=st.integers(0, 2**32 - 1))
def test_mutated_bundles_load_or_fail_clearly_and_never_unpickle(kind, seed, monkeypatch):
    monkeypatch.setattr(pickle, "loads", _refuse)
    monkeypatch.setattr(pickle, "load", _refuse)
    monkeypatch.setattr(torch, "load", _refuse)
    with tempfile.TemporaryDirectory() as folder:
        bundle = Path(folder) / "bundle"
        shutil.copytree(pristine_bundle(), bundle)
        mutate(bundle, kind, random.Random(seed))
        with no_hang():
            try:
                load_bundle(bundle)
            except CLEAR:
                pass


def test_the_pristine_bundle_loads():
    assert isinstance(load_bundle(pristine_bundle()).model, LanguageModel)
