"""Text classification (sentiment, topics, any labels): a many-to-one model over tokens, with any encoder.

``train(config)`` reads labelled texts (CSV, TSV, JSONL, a folder of label sub-folders, or the embedded set),
holds out a seeded validation split when no validation file is given, fits a tokenizer on the training texts,
optionally loads pretrained word vectors into the embedding, trains a :class:`~rnnlab.structures.ManyToOne`
classifier with the :class:`~rnnlab.training.Trainer`, and saves a bundle (weights, ``config.json``, the
tokenizer as ``vocab.json``, the label names as ``labels.json``, ``metrics.json``) in ``<run_dir>/bundle``,
with the confusion matrix of the validation (and test) data beside it as ``<run_dir>/confusion*.png``.

Text before tokenizing: ``<br />`` tags become spaces, runs of whitespace one space, and (``lowercase``) the
text is lower-cased. The word tokenizer keeps a word's leading space in its token (" the"), so each text is
given a leading space too: the first word then gets the same token as everywhere else. A text longer than
``max_length`` tokens keeps its first ``max_length``.

Metrics (scikit-learn's definitions, see :mod:`rnnlab.training.classification_metrics`): accuracy,
macro-F1, per-class precision/recall/F1 and the confusion matrix, on the validation and test data.
"""
from __future__ import annotations

import logging
import re
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Sampler

from rnnlab.data.batching import RankShards, pad_collate
from rnnlab.data.errors import DataError
from rnnlab.data.labelled import EMBEDDED, Example, is_embedded, pydoc_chapters, read_labelled
from rnnlab.data.tokenize import KINDS as TOKENIZERS
from rnnlab.data.tokenize import Tokenizer, WordTokenizer, tokenizer_from_json, train_tokenizer
from rnnlab.data.vectors import read_vectors
from rnnlab.data.vocab import Vocab
from rnnlab.structures import EncoderConfig, ManyToOne, ManyToOneConfig
from rnnlab.structures.base import check_choice
from rnnlab.structures.many_to_one import Pooling
from rnnlab.training import Trainer, TrainerConfig, ValidMetric
from rnnlab.training.checkpoint import from_dict
from rnnlab.training.classification_metrics import classification_metrics, confusion_matrix, plot_confusion

from ._common import check_data_unchanged, check_run_dir, load_task_bundle, locked, save_task_bundle, split_off

log = logging.getLogger(__name__)

TASK = "classify"
DESCRIPTION = "text classification (sentiment, topics, any labels) from CSV/TSV/JSONL or label folders, any encoder"


EMBEDDED_DATA = (
    "paragraphs of Python's documentation (pydoc_data.topics) labelled with their chapter: 9 classes, 1,549 texts"
)


@dataclass(frozen=True)
class ClassifierModelConfig:
    """The classifier: embeddings, an encoder, a pooling of its outputs, a linear layer over the classes."""

    embedding_size: int = 64
    """E: the width of the token embeddings (with --model.embeddings, the vectors' own width instead)."""
    embeddings: Optional[str] = None
    """Pretrained word vectors: a GloVe or word2vec text file (e.g. ~/glove.6B.100d.txt); word tokenizer only.
    Words not in the file start random; the coverage is logged and saved in the metrics."""
    freeze_embeddings: bool = False
    """Keep the embeddings fixed during training (else they are fine-tuned)."""
    encoder: EncoderConfig = field(
        default_factory=lambda: EncoderConfig(kind="lstm", hidden_size=64, bidirectional=True)
    )
    """The sequence encoder: lstm | gru | rnn | mingru | minlstm | cnn | transformer | window (bidirectional for
    lstm/gru/rnn)."""
    pooling: Pooling = "max"
    """How the encoder's outputs become one vector: last (the encoder's summary: a recurrent encoder's final
    state, a transformer's mean), mean or max over the real positions, or attention (a learned query)."""
    dropout: float = 0.3
    """Dropout on the pooled vector, before the output layer."""

    def __post_init__(self) -> None:
        check_choice("--model.pooling", self.pooling, Pooling)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"--model.dropout must be in [0, 1), got {self.dropout!r}")
        if not isinstance(self.embedding_size, int) or self.embedding_size < 1:
            raise ValueError(f"--model.embedding_size must be a positive integer, got {self.embedding_size!r}")

    def build(self, vocab_size: int, num_classes: int, embedding_size: int) -> ManyToOneConfig:
        return ManyToOneConfig(output_size=num_classes, vocab_size=vocab_size, embedding_size=embedding_size,
                               encoder=self.encoder, pooling=self.pooling, dropout=self.dropout, task="classification")


def _default_trainer() -> TrainerConfig:
    # The embedded default: about a minute and a half on two CPU cores; early stopping keeps the best epoch.
    return TrainerConfig(
        optimizer="adamw", lr=3e-3, weight_decay=0.01, warmup_steps=0, schedule="constant",
        max_epochs=20, max_time=90.0, clip_norm=1.0, eval_every=0, early_stopping_patience=4, log_every=20,
        run_dir="runs/classify",
    )


@dataclass(frozen=True)
class ClassifyConfig:
    """Train a text classifier on labelled texts and score it on validation and test data."""

    data: Optional[str] = None
    """Training data: a .csv/.tsv/.jsonl file or a folder of label sub-folders (aclImdb's train/); None (or
    'pydoc-chapters') = the embedded set: paragraphs of Python's documentation labelled by chapter."""
    valid_data: Optional[str] = None
    """Validation data in the same format; None = a seeded valid_fraction of the training data."""
    test_data: Optional[str] = None
    """Test data, scored once at the end; None = none (the embedded set has its own test split)."""
    format: Literal["auto", "csv", "tsv", "jsonl", "folder"] = "auto"
    """auto = by the suffix (.csv, .tsv/.tab, .jsonl/.ndjson) or folder for a directory."""
    text_column: str = "text"
    """The column (CSV/TSV header name) or JSON field holding the text; several comma-separated columns are joined
    by a space; 0-based indices (e.g. 1,2) for a CSV/TSV without a header row."""
    label_column: str = "label"
    """The column or JSON field holding the label (any string; numbers are read as their text); a 0-based index
    for a CSV/TSV without a header row."""
    empty_rows: Literal["error", "skip"] = "error"
    """A row with an empty text or label: error (naming the line) or skip (with a warning listing the lines)."""
    valid_fraction: float = 0.1
    """Without valid_data: hold out this seeded random fraction of the training examples (0 = no validation)."""
    tokenizer: Literal["char", "word", "bpe"] = "word"
    """word (words and punctuation) | char | bpe (byte-level BPE trained on the training texts)."""
    lowercase: bool = True
    """Lower-case every text before tokenizing (so 'Good' and 'good' share a token)."""
    vocab_size: int = 20000
    """word and bpe: the most token ids (the rarest words beyond it map to <unk>)."""
    min_count: int = 2
    """word: keep only words seen at least this often in training (the rest map to <unk>, so the model learns
    what an unknown word looks like)."""
    max_length: int = 128
    """Tokens per text: a longer text keeps its first max_length tokens (the count truncated is logged)."""
    batch_size: int = 32
    """B: texts per batch (batches group texts of similar length)."""
    class_weights: Literal["none", "balanced"] = "none"
    """balanced: weight each class's loss by n / (C · n_class), so rare classes count as much as common ones."""
    model: ClassifierModelConfig = field(default_factory=ClassifierModelConfig)
    trainer: TrainerConfig = field(default_factory=_default_trainer)

    def __post_init__(self) -> None:
        if self.tokenizer not in TOKENIZERS:
            raise ValueError(f"--tokenizer must be one of {TOKENIZERS}, got {self.tokenizer!r}")
        if self.class_weights not in ("none", "balanced"):
            raise ValueError(f"--class_weights must be 'none' or 'balanced', got {self.class_weights!r}")
        if not 0.0 <= self.valid_fraction < 1.0:
            raise ValueError(f"--valid_fraction must be in [0, 1), got {self.valid_fraction!r}")
        for name in ("vocab_size", "min_count", "max_length", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"--{name} must be a positive integer, got {value!r}")
        if self.model.embeddings and self.tokenizer != "word":
            raise ValueError(f"--model.embeddings (word vectors) needs --tokenizer word, got {self.tokenizer!r}")
        if not self.text_column or not self.label_column or self.text_column == self.label_column:
            raise ValueError(f"--text_column and --label_column must be two different names, got "
                             f"{self.text_column!r} and {self.label_column!r}")
        check_run_dir(self)


Config = ClassifyConfig


def config_from_dict(data: dict) -> ClassifyConfig:
    """Rebuild a :class:`ClassifyConfig` from ``asdict(config)`` (as stored in a bundle's config.json)."""
    return from_dict(ClassifyConfig, data)


@dataclass(frozen=True)
class EvaluateOptions:
    """How ``rnnlab evaluate`` reads --data (None = as the bundle's training data was read) and what it writes."""

    text_column: Optional[str] = None
    """The text column or field of --data."""
    label_column: Optional[str] = None
    """The label column or field of --data."""
    format: Optional[Literal["auto", "csv", "tsv", "jsonl", "folder"]] = None
    """The format of --data."""
    plot: Optional[str] = None
    """Write the confusion matrix as a PNG to this path."""
    batch_size: int = 64
    """Texts per batch while scoring."""


@dataclass(frozen=True)
class PredictOptions:
    """How ``rnnlab predict`` runs a classify bundle."""

    batch_size: int = 64
    """Texts per batch."""


# --- text -> ids -------------------------------------------------------------------------------------------

_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)


def normalise(text: str, *, lowercase: bool, leading_space: bool) -> str:
    """<br /> -> space, whitespace runs -> one space, optionally lower-cased and with one leading space."""
    text = " ".join(_BREAK.sub(" ", text).split())
    if lowercase:
        text = text.lower()
    return " " + text if leading_space else text


@dataclass(frozen=True)
class TextPipeline:
    """Normalisation, tokenizer and length cut of a run: the same for training, evaluation and prediction."""

    tokenizer: Tokenizer
    lowercase: bool
    max_length: int

    def encode(self, text: str) -> tuple[list[int], bool]:
        """(ids, whether the text was cut to max_length). Never empty: a text with no token gets <unk>."""
        ids = self.tokenizer.encode(
            normalise(text, lowercase=self.lowercase, leading_space=self.tokenizer.kind == "word")
        )
        return (ids[: self.max_length] or [0]), len(ids) > self.max_length


def fit_tokenizer(config: ClassifyConfig, texts: list[str]) -> Tokenizer:
    """The tokenizer of ``config`` fitted to the (normalised) training texts; word applies ``min_count``."""
    word = config.tokenizer == "word"
    texts = [normalise(t, lowercase=config.lowercase, leading_space=word) for t in texts]
    if not word:
        return train_tokenizer(config.tokenizer, texts, vocab_size=config.vocab_size)
    counts: Counter = Counter()
    for text in texts:
        counts.update(WordTokenizer.split(text))
    return WordTokenizer(Vocab.from_counts(counts, max_size=config.vocab_size, min_count=config.min_count))


def encode_examples(pipeline: TextPipeline, examples: Sequence[Example], label_ids: dict[str, int],
                    what: str) -> list[dict]:
    """``{"x": ids, "y": class id}`` per example; a label outside ``label_ids`` is a DataError at its line."""
    encoded, cut = [], 0
    for example in examples:
        if example.label not in label_ids:
            raise DataError(example.source, f"label {example.label!r} was never seen in training "
                                            f"(known labels: {', '.join(label_ids)})", line=example.line)
        ids, truncated = pipeline.encode(example.text)
        cut += truncated
        encoded.append({"x": ids, "y": label_ids[example.label]})
    if cut:
        log.info("%s: %d of %d texts cut to their first %d tokens (--max_length)", what, cut, len(examples),
                 pipeline.max_length)
    return encoded


# --- batches -----------------------------------------------------------------------------------------------

class SameLengthBatchSampler(RankShards, Sampler[list[int]]):
    """Batches of texts of one length where there are enough of them, the rest batched by similar length.

    Why: a batch whose texts all have the same length needs no ``lengths`` (see :func:`collate`), so recurrent
    encoders run torch's fused kernel on the padded tensor instead of a packed sequence, several times faster
    on the CPU. Each epoch shuffles every length's texts, cuts full batches of one length, sorts the rest by
    length into mixed batches, and shuffles the batch order (torch's global RNG, as the trainer resumes it).
    ``shuffle=False``: the same cut without any shuffling (for evaluation). Under data parallelism each process
    gets its share of the batches (:class:`~rnnlab.data.batching.RankShards`).
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, *, shuffle: bool = True) -> None:
        self.lengths, self.batch_size, self.shuffle = [int(n) for n in lengths], batch_size, shuffle

    def _batches(self) -> list[list[int]]:
        B = self.batch_size
        by_length: dict[int, list[int]] = {}
        generator = self._generator()
        n = len(self.lengths)
        order = torch.randperm(n, generator=generator).tolist() if self.shuffle else range(n)
        for i in order:
            by_length.setdefault(self.lengths[i], []).append(i)
        batches, rest = [], []
        for n in sorted(by_length):
            group = by_length[n]
            full = len(group) - len(group) % B
            batches += [group[k : k + B] for k in range(0, full, B)]
            rest += group[full:]
        batches += [rest[k : k + B] for k in range(0, len(rest), B)]
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
        return batches

    def _num_batches(self) -> int:
        counts = Counter(self.lengths).values()
        rest = sum(c % self.batch_size for c in counts)
        return sum(c // self.batch_size for c in counts) + -(-rest // self.batch_size)


def collate(examples: Sequence[dict]) -> dict:
    """:func:`pad_collate`, without ``lengths`` when every text has the same length (no padding to mask)."""
    batch = pad_collate(examples)
    if bool((batch["lengths"] == batch["x"].shape[1]).all()):
        del batch["lengths"]
    return batch


def make_batches(encoded: Sequence[dict], batch_size: int, *, shuffle: bool) -> DataLoader:
    sampler = SameLengthBatchSampler([len(e["x"]) for e in encoded], batch_size, shuffle=shuffle)
    return DataLoader(list(encoded), batch_sampler=sampler, collate_fn=collate)


# --- data --------------------------------------------------------------------------------------------------

def _read(path: str, config: ClassifyConfig, *, text_column=None, label_column=None, format=None) -> list[Example]:
    return read_labelled(
        path,
        text_column=text_column or config.text_column,
        label_column=label_column or config.label_column,
        format=format or config.format,
        empty=config.empty_rows,
    )


def load_splits(config: ClassifyConfig) -> tuple[list[Example], list[Example], list[Example]]:
    """(train, valid, test) examples as ``config`` names them (valid from a seeded split when not given)."""
    embedded_test: list[Example] = []
    if is_embedded(config.data):
        train, embedded_test = pydoc_chapters()
    else:
        train = _read(config.data, config)
    if config.valid_data:
        valid = _read(config.valid_data, config)
    else:
        train, valid = split_off(train, config.valid_fraction, config.trainer.seed)
    test = _read(config.test_data, config) if config.test_data else embedded_test
    return train, valid, test


EMBEDDED_NAMES = (EMBEDDED,)
"""--data values, besides None, that name the embedded data set."""


def embedded_text(config: ClassifyConfig) -> str:
    """The embedded data set's labelled texts (train and test), as the bundle fingerprints them."""
    train, test = pydoc_chapters()
    return "\n".join(f"{e.label}\t{e.text}" for e in (*train, *test))


def label_names(examples: Iterable[Example]) -> list[str]:
    """The labels of the training examples in a stable order: sorted as strings."""
    return sorted({e.label for e in examples})


# --- pretrained vectors ------------------------------------------------------------------------------------

def _vector_key(token: str) -> str:
    return token.strip()  # the word tokenizer's " the" is GloVe's "the"


def load_embeddings(path: str, tokenizer: Tokenizer, train_ids: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor, dict]:
    """(vectors (V, D), found (V,) bool, coverage) for the tokenizer's vocabulary from a GloVe/word2vec file.

    A token is looked up by its text without the leading space, then lower-cased. Coverage: the share of the
    vocabulary's types (besides <unk>) found, and the share of the training tokens whose type was found.
    """
    tokens = tokenizer.vocab.decode(range(tokenizer.vocab_size))
    keys = [_vector_key(t) for t in tokens]
    found_vectors, dim = read_vectors(path, {k for k in keys if k} | {k.lower() for k in keys if k})
    vectors = torch.zeros(len(tokens), dim)
    found = torch.zeros(len(tokens), dtype=torch.bool)
    for i, key in enumerate(keys):
        vector = found_vectors.get(key, found_vectors.get(key.lower())) if i and key else None
        if vector is not None:
            vectors[i], found[i] = vector, True
    counts = torch.bincount(
        torch.tensor([i for ids in train_ids for i in ids], dtype=torch.long), minlength=len(tokens)
    )
    coverage = {
        "embeddings_dim": dim,
        "embeddings_type_coverage": float(found[1:].float().mean()) if len(tokens) > 1 else 0.0,
        "embeddings_token_coverage": float(counts[found].sum() / counts.sum().clamp_min(1)),
    }
    log.info("embeddings %s: D=%d, %d of %d vocabulary types found (%.1f%%), %.1f%% of the training tokens",
             path, dim, int(found[1:].sum()), len(tokens) - 1, 100 * coverage["embeddings_type_coverage"],
             100 * coverage["embeddings_token_coverage"])
    return vectors, found, coverage


def _init_embedding(model: ManyToOne, vectors: Tensor, found: Tensor, freeze: bool) -> None:
    weight = model.inputs.embedding.weight
    with torch.no_grad():
        if found.any():
            # words without a vector start random at the scale of the ones found
            weight.normal_(0.0, float(vectors[found].std()) or 1.0)
            weight[found] = vectors[found]
    weight.requires_grad_(not freeze)


# --- the training objective --------------------------------------------------------------------------------

class WeightedObjective(nn.Module):
    """The classifier's cross-entropy with per-class weights (None = plain). Trained in place of the model, so
    that the bundle holds the plain :class:`ManyToOne` (the weights are a training choice, not the model's)."""

    def __init__(self, model: ManyToOne, class_weights: Optional[Tensor]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("class_weights", class_weights, persistent=False)

    def forward(self, batch: dict) -> Tensor:
        return self.model(batch).logits  # (B, C)

    def loss(self, batch: dict) -> Tensor:
        return F.cross_entropy(self(batch), batch["y"], weight=self.class_weights)


def balanced_weights(labels: Sequence[int], num_classes: int) -> Tensor:
    """n / (C · n_c) per class c (scikit-learn's 'balanced'); a class absent from training gets weight 1."""
    counts = torch.bincount(torch.tensor(list(labels), dtype=torch.long), minlength=num_classes).double()
    weights = torch.where(counts > 0, counts.sum() / (num_classes * counts.clamp_min(1)), torch.ones_like(counts))
    return weights.float()


# --- scoring -----------------------------------------------------------------------------------------------

@torch.no_grad()
def probabilities(model: ManyToOne, ids: Sequence[Sequence[int]], batch_size: int = 64) -> np.ndarray:
    """(N, C) class probabilities, in the order of ``ids`` (batched by length inside)."""
    model.eval()
    device = next(model.parameters()).device
    out = np.zeros((len(ids), model.config.output_size), dtype=np.float64)
    for chunk in SameLengthBatchSampler([len(i) for i in ids], batch_size, shuffle=False):
        batch = collate([{"x": list(ids[i])} for i in chunk])
        logits = model({k: v.to(device) for k, v in batch.items()}).logits  # (B, C)
        out[chunk] = logits.float().softmax(-1).cpu().numpy()
    return out


def score(model: ManyToOne, encoded: Sequence[dict], labels: Sequence[str], batch_size: int = 64) -> dict:
    """Metrics of ``model`` on encoded examples: accuracy, macro-F1, per class, confusion, loss (nats)."""
    probs = probabilities(model, [e["x"] for e in encoded], batch_size)
    y = np.array([e["y"] for e in encoded], dtype=np.int64)
    metrics = classification_metrics(confusion_matrix(y, probs.argmax(-1), len(labels)), labels)
    metrics["loss"] = float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, None)).mean())
    return metrics


def _summary(prefix: str, metrics: dict) -> dict:
    """Flat figures for metrics.json's top level (what ``rnnlab train`` prints) and the whole under ``prefix``."""
    return {f"{prefix}_accuracy": metrics["accuracy"], f"{prefix}_macro_f1": metrics["macro_f1"], prefix: metrics}


# --- train, evaluate, predict ------------------------------------------------------------------------------

@locked
def train(config: ClassifyConfig) -> Path:
    """Train a classifier as ``config`` says; returns the bundle's path (``<run_dir>/bundle``)."""
    train_ex, valid_ex, test_ex = load_splits(config)
    labels = label_names(train_ex)
    if len(labels) < 2:
        raise DataError(train_ex[0].source, f"classification needs at least 2 labels, the training data has {labels}")
    label_ids = {label: i for i, label in enumerate(labels)}
    log.info(
        "data: %d training, %d validation, %d test examples; %d labels: %s",
        len(train_ex),
        len(valid_ex),
        len(test_ex),
        len(labels),
        ", ".join(f"{l} ({n})" for l, n in sorted(Counter(e.label for e in train_ex).items())),
    )

    tokenizer = fit_tokenizer(config, [e.text for e in train_ex])
    pipeline = TextPipeline(tokenizer, config.lowercase, config.max_length)
    train_enc = encode_examples(pipeline, train_ex, label_ids, "train")
    valid_enc = encode_examples(pipeline, valid_ex, label_ids, "valid")
    test_enc = encode_examples(pipeline, test_ex, label_ids, "test")

    extra: dict = {}
    vectors = None
    if config.model.embeddings:
        vectors, found, coverage = load_embeddings(config.model.embeddings, tokenizer, [e["x"] for e in train_enc])
        extra.update(coverage)
    embedding_size = vectors.shape[1] if vectors is not None else config.model.embedding_size
    torch.manual_seed(config.trainer.seed)
    model = ManyToOne(config.model.build(tokenizer.vocab_size, len(labels), embedding_size))
    if vectors is not None:
        _init_embedding(model, vectors, found, config.model.freeze_embeddings)
    weights = balanced_weights([e["y"] for e in train_enc], len(labels)) if config.class_weights == "balanced" else None
    log.info("model: %s tokenizer, V=%d, %s encoder, %s pooling, %d parameters", tokenizer.kind, tokenizer.vocab_size,
             config.model.encoder.kind, config.model.pooling, sum(p.numel() for p in model.parameters()))

    train_loader = make_batches(train_enc, config.batch_size, shuffle=True)
    valid_loader = make_batches(valid_enc, config.batch_size, shuffle=False) if valid_enc else None
    accuracy = ValidMetric("valid_accuracy", lambda loss: score(model, valid_enc, labels)["accuracy"])
    metrics = dict(Trainer(config.trainer, metric=accuracy if valid_enc else None).fit(
        WeightedObjective(model, weights), train_loader, valid_loader))
    metrics.update(extra)
    model.eval()
    run_dir = Path(config.trainer.run_dir)
    for name, encoded, png in (("valid", valid_enc, "confusion.png"), ("test", test_enc, "confusion_test.png")):
        if encoded:
            result = score(model, encoded, labels)
            metrics.update(_summary(name, result))
            _plot(
                result, run_dir / png, f"{name}: accuracy {result['accuracy']:.3f}, macro-F1 {result['macro_f1']:.3f}"
            )
            log.info("%s: accuracy %.4f, macro-F1 %.4f (%d examples)", name, result["accuracy"], result["macro_f1"],
                     result["examples"])
    return save_task_bundle(
        TASK, config, model, assets={"vocab": tokenizer.to_json(), "labels": labels}, metrics=metrics
    )


def _plot(metrics: dict, path: Path, title: str) -> None:
    try:
        plot_confusion(np.array(metrics["confusion"]), metrics["labels"], path, title=title)
    except ImportError:  # matplotlib is an optional install
        log.warning("matplotlib is not installed: no %s", path)


def load_classifier(bundle_path: Union[str, Path]) -> tuple[ManyToOne, TextPipeline, list[str], ClassifyConfig]:
    """(model in eval mode, text pipeline, label names, the run's config) of a classify bundle."""
    bundle = load_task_bundle(bundle_path, TASK)
    labels = bundle.assets.get("labels")
    if not isinstance(bundle.model, ManyToOne) or bundle.vocab is None or not isinstance(labels, list):
        raise ValueError(f"{bundle.path} is not a classify bundle (it lacks a ManyToOne model, vocab.json or "
                         "labels.json)")
    config = config_from_dict(bundle.task_config)
    pipeline = TextPipeline(tokenizer_from_json(bundle.vocab), config.lowercase, config.max_length)
    return bundle.model, pipeline, labels, config


def evaluate(bundle_path: Union[str, Path], data: Optional[str] = None, *, text_column: Optional[str] = None,
             label_column: Optional[str] = None, format: Optional[str] = None, plot: Optional[str] = None,
             batch_size: int = 64) -> dict:
    """Metrics of a bundle on ``data`` (a file or folder in a format :func:`read_labelled` reads; 'pydoc-chapters'
    = the embedded set's test split), or on the validation data of its training run when ``data`` is None (the
    same seeded split, so the figures equal the bundle's ``valid`` metrics). ``plot``: also write the confusion
    matrix PNG there."""
    model, pipeline, labels, config = load_classifier(bundle_path)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"--batch_size must be a positive integer, got {batch_size!r}")
    if data is None:
        check_data_unchanged(bundle_path, config, sys.modules[__name__])
        examples = load_splits(config)[1]
        if not examples:
            raise ValueError(f"{bundle_path} was trained without validation data: give --data FILE to score")
    elif is_embedded(data):
        examples = pydoc_chapters()[1]  # the embedded set's test split
    else:
        examples = _read(data, config, text_column=text_column, label_column=label_column, format=format)
    encoded = encode_examples(pipeline, examples, {label: i for i, label in enumerate(labels)}, str(data or "valid"))
    metrics = score(model, encoded, labels, batch_size)
    if plot:
        _plot(metrics, Path(plot).expanduser(), f"accuracy {metrics['accuracy']:.3f}, macro-F1 "
                                                f"{metrics['macro_f1']:.3f}")
    return metrics


def predict(bundle_path: Union[str, Path], inputs: Iterable[str], *, batch_size: int = 64) -> Iterator[dict]:
    """``{"text", "label", "probabilities": {label: p}}`` for each non-empty input, in order (loaded once)."""
    model, pipeline, labels, _ = load_classifier(bundle_path)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"--batch_size must be a positive integer, got {batch_size!r}")
    pending: list[str] = []
    for text in inputs:
        if not isinstance(text, str):
            raise TypeError(f"predict takes strings, got {type(text).__name__}")
        if text.strip():
            pending.append(text)
        if len(pending) == batch_size:
            yield from _classify(model, pipeline, labels, pending)
            pending = []
    if pending:
        yield from _classify(model, pipeline, labels, pending)


def _classify(model: ManyToOne, pipeline: TextPipeline, labels: list[str], texts: list[str]) -> Iterator[dict]:
    probs = probabilities(model, [pipeline.encode(t)[0] for t in texts], len(texts))
    for text, p in zip(texts, probs):
        yield {"text": text, "label": labels[int(p.argmax())],
               "probabilities": {label: round(float(q), 6) for label, q in zip(labels, p)}}


__all__ = ["ClassifyConfig", "ClassifierModelConfig", "EvaluateOptions", "PredictOptions", "train", "evaluate",
           "predict", "load_classifier", "EMBEDDED"]
