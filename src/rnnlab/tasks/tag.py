"""Sequence tagging (many-to-many of equal length): POS tagging, chunking, named entities.

``train(config)`` reads CoNLL column files (:mod:`rnnlab.data.conll`), or generates the embedded NER task
(:mod:`rnnlab.data.synthetic_ner`) when no ``--data`` is given, trains a
:class:`~rnnlab.structures.ManyToMany`: a bidirectional encoder over word embeddings concatenated with
character-level word features (Lample et al., 2016; Ma and Hovy, 2016), with an optional CRF whose
transitions the tag scheme constrains (no ``I-X`` after ``O`` in BIO), and saves a bundle.

Word features: embeddings of the *lower-cased* word (``model.lowercase``), so that "The" and "the" share one
vector; the character features see the original spelling, which carries the case and covers words missing
from the word vocabulary (words seen fewer than ``model.word_min_count`` times in training map to ``<unk>``).

Metrics: token accuracy, and for BIO/BIOES tag sets entity-level precision, recall and F1, overall (micro)
and per type, by ``seqeval`` (the conlleval definition for BIO; strict IOBES matching for BIOES).
"""
from __future__ import annotations

import logging
import os
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional, Union

import torch

from rnnlab.data.batching import make_loader, pad_collate
from rnnlab.data.conll import Scheme, Sentence, detect_scheme, read_tagged
from rnnlab.data.errors import DataError
from rnnlab.data.vocab import Vocab
from rnnlab.structures import EncoderConfig, ManyToMany, ManyToManyConfig
from rnnlab.training import Trainer, TrainerConfig

from ._common import (
    check_data_unchanged,
    check_positive,
    check_run_dir,
    load_task_bundle,
    locked,
    save_task_bundle,
    split_off,
)

log = logging.getLogger(__name__)

TASK = "tag"
DESCRIPTION = "sequence tagging (POS, chunking, NER) from CoNLL files: BiLSTM + char features + optional CRF"

EMBEDDED_DATA = "generated NER sentences (PER/LOC/ORG/DATE in BIO tags), names in the test split never seen in training"
EMBEDDED_SIZES = {"train": 4000, "valid": 400, "test": 800}
"""Sentences of each split of the generated NER task (the test split uses held-out names)."""


@dataclass(frozen=True)
class TagModelConfig:
    """The tagger: word embeddings + character features -> a bidirectional encoder -> tag scores (+ CRF)."""

    embedding_size: int = 100
    """The width of the word embeddings."""
    lowercase: bool = True
    """Embed lower-cased words (the character features still see the case)."""
    word_min_count: int = 2
    """Words seen fewer times in training map to <unk> (whose embedding then learns to stand for rare words)."""
    char_encoder: Literal["none", "cnn", "lstm"] = "cnn"
    """Character-level word features: cnn (Ma and Hovy, 2016), lstm (Lample et al., 2016) or none."""
    char_embedding_size: int = 25
    """The width of the character embeddings."""
    char_hidden_size: int = 50
    """cnn: filters; lstm: hidden size per direction."""
    max_word_length: int = 20
    """Characters the char features read per word: a longer word keeps its first and last halves (prefix, suffix)."""
    encoder: EncoderConfig = field(
        default_factory=lambda: EncoderConfig(kind="lstm", hidden_size=128, bidirectional=True)
    )
    """The sequence encoder; any kind works, a bidirectional one sees the right context too."""
    crf: bool = True
    """A linear-chain CRF over the tags (trained by its likelihood, decoded by Viterbi); for BIO/BIOES tags its
    forbidden transitions are masked, so no output is an invalid sequence."""
    dropout: float = 0.5
    """Dropout on the word+char vectors and on the encoder's outputs."""
    word_dropout: float = 0.0
    """Training only: a word is replaced by <unk> with this probability (its characters stay)."""

    def __post_init__(self) -> None:
        for name in ("embedding_size", "word_min_count", "char_embedding_size", "char_hidden_size", "max_word_length"):
            check_positive(self, name)
        if self.char_encoder not in ("none", "cnn", "lstm"):
            raise ValueError(f"--model.char_encoder must be one of none, cnn, lstm, got {self.char_encoder!r}")
        if not 0 <= self.dropout < 1 or not 0 <= self.word_dropout < 1:
            raise ValueError(f"--model.dropout and --model.word_dropout must be in [0, 1), got {self.dropout}, "
                             f"{self.word_dropout}")


def _default_trainer() -> TrainerConfig:
    # The embedded recipe: under two minutes on two CPU cores.
    return TrainerConfig(optimizer="adam", lr=2e-3, max_epochs=4, max_time=100.0, clip_norm=5.0, eval_every=0,
                         log_every=50, run_dir="runs/tag")


@dataclass(frozen=True)
class TagConfig:
    """Train a tagger on CoNLL column files (or on the embedded generated NER task)."""

    data: Optional[str] = None
    """Training data: a CoNLL column file (one token per line, a blank line between sentences; ~ is expanded).
    None = the embedded task: generated NER sentences (PER/LOC/ORG/DATE, BIO), tested on unseen names."""
    valid_data: Optional[str] = None
    """Validation file in the same format; None = hold out valid_fraction of the training sentences (seeded)."""
    test_data: Optional[str] = None
    """Test file, scored once after training (and by 'rnnlab evaluate BUNDLE' without --data)."""
    token_column: int = 0
    """The column of the token (0-based; negative counts from the end). CoNLL-U: 1."""
    tag_column: int = -1
    """The column of the tag (0-based; -1 = the last). CoNLL-2003 NER: -1 (or 3); CoNLL-U UPOS: 3."""
    tag_scheme: Literal["auto", "bio", "bioes", "plain"] = "auto"
    """bio (IOB2; IOB1 is converted to it), bioes, plain (POS or any tags), or auto: detected from the tags."""
    valid_fraction: float = 0.1
    """Without valid_data: the fraction of training sentences held out for validation."""
    batch_size: int = 32
    """Sentences per batch (bucketed by length)."""
    model: TagModelConfig = field(default_factory=TagModelConfig)
    trainer: TrainerConfig = field(default_factory=_default_trainer)

    def __post_init__(self) -> None:
        check_positive(self, "batch_size")
        if not 0.0 <= self.valid_fraction < 1.0:
            raise ValueError(f"--valid_fraction must be in [0, 1), got {self.valid_fraction}")
        if self.tag_scheme not in ("auto", "bio", "bioes", "plain"):
            raise ValueError(f"--tag_scheme must be one of auto, bio, bioes, plain, got {self.tag_scheme!r}")
        for name in ("token_column", "tag_column"):
            if not isinstance(getattr(self, name), int):
                raise ValueError(f"--{name} must be an integer column index, got {getattr(self, name)!r}")
        if self.token_column == self.tag_column:
            raise ValueError(f"--token_column and --tag_column are both {self.token_column}: they must differ")
        check_run_dir(self)


Config = TagConfig


@dataclass(frozen=True)
class PredictOptions:
    batch_size: int = 64
    """Sentences tagged at once."""


@dataclass(frozen=True)
class EvaluateOptions:
    token_column: Optional[int] = None
    """The token column of --data (None = the bundle's training setting)."""
    tag_column: Optional[int] = None
    """The tag column of --data (None = the bundle's training setting)."""
    batch_size: int = 64
    """Sentences tagged at once."""


# --- data ------------------------------------------------------------------------------------------------------

def _read(path: str, config: TagConfig, scheme: str) -> tuple[list[Sentence], Scheme]:
    return read_tagged(path, token_column=config.token_column, tag_column=config.tag_column, scheme=scheme)


def embedded_text(config: TagConfig) -> str:
    """The embedded task's sentences (every split, for the run's seed), as the bundle fingerprints them."""
    from rnnlab.data import synthetic_ner

    return "\n".join(" ".join(f"{w}/{t}" for w, t in zip(s.tokens, s.tags, strict=True))
                     for split in ("train", "valid", "test")
                     for s in synthetic_ner.generate(EMBEDDED_SIZES[split], split, seed=config.trainer.seed))


def load_splits(config: TagConfig) -> tuple[list[Sentence], list[Sentence], list[Sentence], Scheme, dict]:
    """(train, valid, test, scheme, names of the sources). test is [] when there is none."""
    if config.data is None:
        from rnnlab.data import synthetic_ner

        seed = config.trainer.seed
        splits = [synthetic_ner.generate(EMBEDDED_SIZES[s], s, seed=seed) for s in ("train", "valid", "test")]
        scheme = "bio" if config.tag_scheme == "auto" else config.tag_scheme
        return (
            *splits,
            scheme,
            {"train": "embedded generated NER", "valid": "embedded", "test": "embedded (unseen names)"},
        )
    train, scheme = _read(config.data, config, config.tag_scheme)
    sources = {"train": config.data}
    if config.valid_data:
        valid = _read(config.valid_data, config, scheme)[0]
        sources["valid"] = config.valid_data
    else:
        train, valid = split_off(train, config.valid_fraction, config.trainer.seed)
        sources["valid"] = f"{config.valid_fraction:g} of {config.data}"
    test = _read(config.test_data, config, scheme)[0] if config.test_data else []
    if config.test_data:
        sources["test"] = config.test_data
    return train, valid, test, scheme, sources


def _word(token: str, lowercase: bool) -> str:
    return token.lower() if lowercase else token


def build_vocabs(train: Sequence[Sentence], model: TagModelConfig) -> tuple[Vocab, Vocab, list[str]]:
    """(words, chars, tags). Char ids: 0 padding, 1 unknown, then the training characters. Tags by frequency."""
    counts = Counter(_word(t, model.lowercase) for s in train for t in s.tokens)
    words = Vocab.from_counts(counts, min_count=model.word_min_count)
    chars = Vocab.from_tokens((c for s in train for t in s.tokens for c in t), unk="<pad>", specials=("<unk>",))
    tag_counts = Counter(t for s in train for t in s.tags)
    tags = sorted(tag_counts, key=lambda t: (-tag_counts[t], t))
    return words, chars, tags


def _char_ids(token: str, chars: Vocab, max_len: int) -> list[int]:
    if len(token) > max_len:
        token = token[: max_len // 2] + token[len(token) - (max_len - max_len // 2):]
    return [chars.id(c) or 1 for c in token]  # an unknown character -> 1 (<unk>); 0 is padding


class Encoder:
    """Sentences -> example dicts ``{"x", "chars", "y"}`` for the model (vocabularies from the bundle)."""

    def __init__(self, words: Vocab, chars: Vocab, tags: list[str], model: TagModelConfig) -> None:
        self.words, self.chars, self.tags, self.model = words, chars, tags, model
        self.tag_ids = {t: i for i, t in enumerate(tags)}

    def example(self, tokens: Sequence[str], tags: Optional[Sequence[str]] = None) -> dict:
        m = self.model
        example = {
            "x": self.words.encode(_word(t, m.lowercase) for t in tokens),
            "chars": [_char_ids(t, self.chars, m.max_word_length) for t in tokens],
        }
        if tags is not None:
            example["y"] = [self.tag_ids[t] for t in tags]
        return example

    def check_tags(self, sentences: Sequence[Sentence], path: str) -> None:
        """Every tag was seen in training, or a DataError at the first that was not."""
        for s in sentences:
            for tag, line in zip(s.tags, s.lines):
                if tag not in self.tag_ids:
                    known = ", ".join(self.tags[:20]) + (" ..." if len(self.tags) > 20 else "")
                    raise DataError(path, f"tag {tag!r} never occurs in the training data, so the model cannot "
                                          f"predict it (the {len(self.tags)} known tags: {known})", line=line)


# --- metrics ---------------------------------------------------------------------------------------------------

def tag_metrics(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], scheme: str) -> dict:
    """token ``accuracy``; for bio/bioes also micro ``precision``/``recall``/``f1`` of entities and per type."""
    total = sum(len(g) for g in gold)
    correct = sum(a == b for g, p in zip(gold, pred) for a, b in zip(g, p))
    metrics: dict = {"accuracy": correct / max(total, 1), "tokens": total, "sentences": len(gold)}
    if scheme in ("bio", "bioes"):
        from seqeval.metrics import classification_report
        from seqeval.scheme import IOBES

        options = {"mode": "strict", "scheme": IOBES} if scheme == "bioes" else {}
        report = classification_report([list(g) for g in gold], [list(p) for p in pred], output_dict=True,
                                       zero_division=0, **options)
        micro = report.pop("micro avg")
        metrics.update(precision=float(micro["precision"]), recall=float(micro["recall"]), f1=float(micro["f1-score"]))
        metrics["per_type"] = {k: {"precision": float(v["precision"]), "recall": float(v["recall"]),
                                   "f1": float(v["f1-score"]), "support": int(v["support"])}
                               for k, v in report.items() if not k.endswith(" avg")}
    return metrics


def entities(tokens: Sequence[str], tags: Sequence[str]) -> list[dict]:
    """The entities of a BIO/BIOES tag sequence: ``{"type", "start", "end", "text"}``, end exclusive."""
    from seqeval.metrics.sequence_labeling import get_entities

    return [{"type": kind, "start": start, "end": end + 1, "text": " ".join(tokens[start : end + 1])}
            for kind, start, end in get_entities(list(tags))]


# --- train, evaluate, predict -----------------------------------------------------------------------------------

def build_model(config: TagConfig, words: Vocab, chars: Vocab, tags: list[str], scheme: str) -> ManyToMany:
    m = config.model
    model = ManyToMany(ManyToManyConfig(
        output_size=len(tags), vocab_size=len(words), embedding_size=m.embedding_size, encoder=m.encoder, crf=m.crf,
        dropout=m.dropout, char_encoder=m.char_encoder, char_vocab_size=len(chars),
        char_embedding_size=m.char_embedding_size, char_hidden_size=m.char_hidden_size, word_dropout=m.word_dropout,
    ))
    if model.crf is not None and scheme in ("bio", "bioes"):
        from rnnlab.nn.crf import allowed_transitions

        start, transitions, end = allowed_transitions(tags, scheme)
        model.crf.constrain(transitions, start=start, end=end)
    return model


def tag_sentences(model: ManyToMany, encoder: Encoder, sentences: Sequence[Sequence[str]], *,
                  batch_size: int = 64) -> list[list[str]]:
    """The predicted tags of each token sequence (in the order given), batched by length."""
    model.eval()
    device = next(model.parameters()).device
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    out: list[list[str]] = [[] for _ in sentences]
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        batch = pad_collate([encoder.example(sentences[i]) for i in chunk])
        pred = model.predict(batch["x"].to(device), batch["lengths"].to(device), chars=batch["chars"].to(device))
        for row, i in zip(pred.cpu().tolist(), chunk):
            out[i] = [encoder.tags[t] for t in row[: len(sentences[i])]]
    return out


def _score(model, encoder, sentences: Sequence[Sentence], scheme: str, batch_size: int = 64) -> dict:
    pred = tag_sentences(model, encoder, [s.tokens for s in sentences], batch_size=batch_size)
    return tag_metrics([s.tags for s in sentences], pred, scheme)


@locked
def train(config: TagConfig) -> Path:
    """Train a tagger as ``config`` says; returns the bundle's path (``<run_dir>/bundle``)."""
    train_set, valid_set, test_set, scheme, sources = load_splits(config)
    words, chars, tags = build_vocabs(train_set, config.model)
    encoder = Encoder(words, chars, tags, config.model)
    encoder.check_tags(valid_set, sources["valid"])
    encoder.check_tags(test_set, sources.get("test", ""))
    log.info("tag: %d train / %d valid / %d test sentences, %s tags (%d), %d words, %d chars", len(train_set),
             len(valid_set), len(test_set), scheme, len(tags), len(words), len(chars))

    torch.manual_seed(config.trainer.seed)
    model = build_model(config, words, chars, tags, scheme)
    log.info("model: %d parameters", sum(p.numel() for p in model.parameters()))
    train_loader = make_loader([encoder.example(s.tokens, s.tags) for s in train_set], config.batch_size)
    valid_loader = (
        make_loader([encoder.example(s.tokens, s.tags) for s in valid_set], config.batch_size, shuffle=False)
        if valid_set
        else None
    )
    metrics = dict(Trainer(config.trainer).fit(model, train_loader, valid_loader))
    for name, split in (("valid", valid_set), ("test", test_set)):
        if split:
            scored = _score(model, encoder, split, scheme)
            metrics.update({f"{name}_{k}": v for k, v in scored.items()})
            log.info("%s: accuracy %.4f%s", name, scored["accuracy"],
                     f", entity F1 {scored['f1']:.4f}" if "f1" in scored else "")
    assets = {"words": words.to_json(), "chars": chars.to_json(), "tags": {"tags": tags, "scheme": scheme}}
    return save_task_bundle(TASK, config, model, assets=assets, metrics=metrics)


def load_tagger(bundle_path: Union[str, Path]) -> tuple[ManyToMany, Encoder, str, TagConfig]:
    """(model in eval mode, encoder, tag scheme, the training config) of a tag bundle."""
    from rnnlab.training.checkpoint import from_dict

    bundle = load_task_bundle(bundle_path, TASK)
    if not isinstance(bundle.model, ManyToMany) or not {"words", "chars", "tags"} <= set(bundle.assets):
        raise ValueError(f"{bundle.path} is not a tagging bundle (no words/chars/tags assets)")
    config = from_dict(TagConfig, bundle.task_config)
    tags = bundle.assets["tags"]
    encoder = Encoder(Vocab.from_json(bundle.assets["words"]), Vocab.from_json(bundle.assets["chars"]),
                      list(tags["tags"]), config.model)
    return bundle.model, encoder, tags["scheme"], config


def evaluate(bundle_path: Union[str, Path], data: Optional[str] = None, *, token_column: Optional[int] = None,
             tag_column: Optional[int] = None, batch_size: int = 64) -> dict:
    """Token accuracy (and entity precision/recall/F1 for BIO/BIOES) of a bundle on ``data``, a CoNLL file in
    the bundle's tag scheme; ``data=None`` scores the held-out data of the training run (its test data if it had
    some, else its validation data; the embedded task: its test split of unseen names)."""
    model, encoder, scheme, config = load_tagger(bundle_path)
    check_positive(EvaluateOptions(batch_size=batch_size), "batch_size")
    if data is not None:
        path = os.path.expanduser(data)
        columns = {"token_column": config.token_column if token_column is None else token_column,
                   "tag_column": config.tag_column if tag_column is None else tag_column}
        sentences, _ = read_tagged(path, scheme=scheme, **columns)
        source = data
    else:
        check_data_unchanged(bundle_path, config, sys.modules[__name__])
        train_set, valid_set, test_set, _, sources = load_splits(config)
        sentences, source = (test_set, sources.get("test")) if test_set else (valid_set, sources["valid"])
        if not sentences:
            raise ValueError("the bundle's training run held nothing out (valid_fraction 0, no valid/test data): "
                             "give --data FILE")
    encoder.check_tags(sentences, source)
    return {"data": source, "scheme": scheme, **_score(model, encoder, sentences, scheme, batch_size)}


def predict(bundle_path: Union[str, Path], inputs: Iterable[str], *, batch_size: int = 64) -> Iterator[dict]:
    """``{"tokens", "tags", "entities"}`` for each non-empty input, tokenised on whitespace (entities are [] for
    plain tag sets; ``end`` is exclusive)."""
    model, encoder, scheme, _ = load_tagger(bundle_path)
    check_positive(PredictOptions(batch_size=batch_size), "batch_size")
    pending: list[list[str]] = []

    def flush() -> Iterator[dict]:
        for tokens, tags in zip(pending, tag_sentences(model, encoder, pending, batch_size=batch_size)):
            ents = entities(tokens, tags) if scheme in ("bio", "bioes") else []
            yield {"tokens": tokens, "tags": tags, "entities": ents}
        pending.clear()

    for line in inputs:
        tokens = line.split()
        if tokens:
            pending.append(tokens)
        if len(pending) >= batch_size:
            yield from flush()
    yield from flush()


__all__ = ["TASK", "DESCRIPTION", "Config", "TagConfig", "TagModelConfig", "PredictOptions", "EvaluateOptions",
           "train", "evaluate", "predict", "load_tagger", "tag_metrics", "entities", "detect_scheme"]
