"""Tiny bundles of every built-in task (trained once per test session) and a live server on a loopback port."""
from __future__ import annotations

import asyncio
import random
import socket
import threading
import time

import httpx
import pytest

from rnnlab.data import synthetic_ner
from rnnlab.data.dates import date_pairs
from rnnlab.structures import DecoderConfig, EncoderConfig
from rnnlab.tasks import classify, tag, textgen, translate
from rnnlab.training import TrainerConfig

TEXT = "".join(f"def f{i % 7}(x):\n    return x + {i % 5}\n\nThe cat sat on the mat {i}.\n" for i in range(120))
WORDS = {"positive": ["good", "great", "fine"], "negative": ["bad", "awful", "poor"], "neutral": ["a", "the", "some"]}


def _trainer(tmp, steps: int, **kw) -> TrainerConfig:
    return TrainerConfig(lr=1e-2, max_steps=steps, max_epochs=0, eval_every=0, log_every=100, progress=False,
                         curves=False, device="cpu", run_dir=str(tmp / "run"), **kw)


def train_textgen(tmp, hidden: int = 16, steps: int = 30, kind: str = "lstm", layers: int = 1):
    (tmp / "corpus.txt").write_text(TEXT, encoding="utf-8")
    return textgen.train(textgen.TextgenConfig(
        data=str(tmp / "corpus.txt"), batch_size=4, bptt=16,
        model=textgen.TextModelConfig(embedding_size=8, encoder=EncoderConfig(kind=kind, hidden_size=hidden,
                                                                              num_layers=layers)),
        trainer=_trainer(tmp, steps)))


def train_classify(tmp):
    rng = random.Random(0)
    lines = ["text,label"]
    for i in range(90):
        label = ["positive", "negative", "neutral"][i % 3]
        lines.append(f'"{rng.choice(["film", "plot", "it"])} {rng.choice(WORDS[label])} .",{label}')
    (tmp / "train.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return classify.train(classify.ClassifyConfig(
        data=str(tmp / "train.csv"), batch_size=16, min_count=1,
        model=classify.ClassifierModelConfig(embedding_size=8, encoder=EncoderConfig(kind="lstm", hidden_size=8)),
        trainer=_trainer(tmp, 20)))


def train_tag(tmp):
    sentences = synthetic_ner.generate(60, "train", seed=1)
    text = "".join("".join(f"{t}\t{g}\n" for t, g in zip(s.tokens, s.tags)) + "\n" for s in sentences)
    (tmp / "train.conll").write_text(text, encoding="utf-8")
    return tag.train(tag.TagConfig(
        data=str(tmp / "train.conll"), batch_size=16,
        model=tag.TagModelConfig(embedding_size=8, char_embedding_size=6, char_hidden_size=8, dropout=0.0,
                                 encoder=EncoderConfig(kind="lstm", hidden_size=8, bidirectional=True)),
        trainer=_trainer(tmp, 10)))


def train_translate(tmp):
    (tmp / "train.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in date_pairs(80, "train")), encoding="utf-8")
    return translate.train(translate.TranslateConfig(
        data=str(tmp / "train.tsv"), valid_fraction=0.1, batch_size=16, max_target_length=12,
        model=translate.TranslateModelConfig(
            embedding_size=8, encoder=EncoderConfig(kind="lstm", hidden_size=8, bidirectional=True),
            decoder=DecoderConfig(hidden_size=16)),
        trainer=_trainer(tmp, 6)))


@pytest.fixture(scope="session")
def bundles(tmp_path_factory) -> dict:
    """name -> bundle path of a tiny model of each built-in task."""
    root = tmp_path_factory.mktemp("serve-bundles")
    out = {}
    for name, train in (("poems", train_textgen), ("sentiment", train_classify), ("ner", train_tag),
                        ("dates", train_translate)):
        (root / name).mkdir()
        out[name] = train(root / name)
    return out


@pytest.fixture(scope="session")
def loaded(bundles) -> dict:
    from rnnlab.serve.models import load_models

    return load_models(bundles)


def make_app(loaded, **limits):
    from rnnlab.serve import ServeLimits, create_app

    return create_app({}, ServeLimits(**limits), models=loaded)


def run_async(coro):
    return asyncio.run(coro)


def client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """uvicorn serving ``app`` on a free loopback port in a thread."""

    def __init__(self, app) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the test server did not start within 10 s")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="session")
def live(loaded):
    with LiveServer(make_app(loaded, max_new_tokens=100_000)) as server:
        yield server
