"""Translation: an encoder-decoder trained on sentence pairs, decoded greedily or by beam search.

``train(config)`` reads tab-separated pairs (``source<TAB>target``; see :mod:`rnnlab.data.pairs`), or generates
the embedded task (dates in many styles -> ISO, :mod:`rnnlab.data.dates`) when no ``--data`` is given; fits a
char, word or BPE tokenizer per side (or one shared by both), drops pairs longer than the length limits, trains
a :class:`~rnnlab.structures.Seq2Seq` (``--model.kind rnn``: context last/linear/pool, Bahdanau or Luong
attention or none) or the :class:`~rnnlab.structures.TransformerSeq2Seq` baseline (``--model.kind transformer``)
with the :class:`~rnnlab.training.Trainer`, decodes the validation (and test) pairs and saves a bundle with
both tokenizers as assets.

Metrics (``evaluate``, and ``valid_*``/``test_*`` in the bundle's metrics.json): corpus BLEU and chrF from
``sacrebleu`` (its default 13a tokenisation and chrF with character 6-grams, beta 2) on the detokenised
translations against the references as the file spells them, and exact match (the share of translations equal
to their reference after stripping surrounding spaces). All three are percentages.

Target ids: 0 pads, 1 begins, 2 ends a target; the target tokenizer's ids follow from 3. Source ids are the
source tokenizer's own (padding is masked by the lengths).
"""
from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal, Optional, Union

import torch
from torch import Tensor, nn

from rnnlab.data.batching import make_loader
from rnnlab.data.dates import date_pairs
from rnnlab.data.errors import DataError
from rnnlab.data.pairs import Pair, expand, read_pairs
from rnnlab.data.tokenize import Tokenizer, tokenizer_from_json, train_tokenizer
from rnnlab.structures import (
    DecoderConfig,
    EncoderConfig,
    Seq2Seq,
    Seq2SeqConfig,
    TransformerSeq2Seq,
    TransformerSeq2SeqConfig,
)
from rnnlab.training import Trainer, TrainerConfig
from rnnlab.training.checkpoint import from_dict

from ._common import (
    check_data_unchanged,
    check_decoding,
    check_positive,
    check_run_dir,
    load_task_bundle,
    locked,
    save_task_bundle,
    split_off,
)

log = logging.getLogger(__name__)

TASK = "translate"
DESCRIPTION = ("translation of sentence pairs (source<TAB>target) by a seq2seq RNN with attention or a Transformer; "
               "BLEU, chrF, exact match")

EMBEDDED_DATA = (
    "dates written in words and numbers in seven styles -> ISO dates (1900-2099), test dates never seen in training"
)
PAD, BOS, EOS = 0, 1, 2
SPECIALS = 3  # target ids below this are PAD, BOS, EOS; the target tokenizer's id i is i + SPECIALS
EMBEDDED = "<embedded dates>"  # how errors and logs name the generated data set
EMBEDDED_HELD_OUT = 1000  # validation and test pairs of the embedded task (each from its own pool of dates)
Units = Literal["char", "word", "bpe"]


# --- configuration ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TransformerOptions:
    """--model.kind transformer: the baseline's sizes (embedding_size and dropout come from the model)."""

    hidden_size: int = 128
    """d_model: the width of every block."""
    num_layers: int = 2
    """Blocks in the encoder and in the decoder."""
    num_heads: int = 4
    """Attention heads; hidden_size must be divisible by it."""
    ff_size: int = 0
    """The feed-forward width; 0 means 4 * hidden_size."""
    norm: Literal["layer", "rms"] = "layer"
    """LayerNorm or RMSNorm."""
    norm_position: Literal["pre", "post"] = "pre"
    """Normalise before each sublayer (pre-norm) or after the residual sum (post-norm)."""


@dataclass(frozen=True)
class TranslateModelConfig:
    """The encoder-decoder (vocabulary sizes come from the tokenizers)."""

    kind: Literal["rnn", "transformer"] = "rnn"
    """rnn: Seq2Seq (a recurrent encoder and decoder, the options below) | transformer: the baseline
    (the options under transformer)."""
    embedding_size: int = 32
    """The width of the source and target token embeddings."""
    encoder: EncoderConfig = field(
        default_factory=lambda: EncoderConfig(kind="lstm", hidden_size=64, bidirectional=True))
    """rnn: the encoder (any kind; bidirectional reads the source both ways)."""
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    """rnn: the decoder's cell, width (hidden_size) and stacked layers (each starts from the context vector)."""
    context: Literal["last", "linear", "pool"] = "linear"
    """rnn: the decoder's first state: the encoder's last state as it is (needs the encoder output size equal to
    decoder.hidden_size) | a learned transform of it | a transform of the mean of all encoder states."""
    attention: Literal["none", "bahdanau", "luong-dot", "luong-general"] = "bahdanau"
    """rnn: attention over the encoder states at every decoder step (none = the context vector only)."""
    attention_size: int = 0
    """rnn, bahdanau: the width inside the additive score (0 = decoder.hidden_size)."""
    teacher_forcing: float = 1.0
    """rnn: the probability of feeding the true previous token while training (else the model's own guess)."""
    dropout: float = 0.0
    """Dropout on embeddings and decoder outputs (rnn) or inside the blocks (transformer)."""
    transformer: TransformerOptions = field(default_factory=TransformerOptions)

    def build(self, src_vocab_size: int, tgt_vocab_size: int, max_len: int) -> nn.Module:
        """The model for these vocabularies; ``max_len`` bounds the Transformer's positions."""
        if self.kind == "transformer":
            t = self.transformer
            return TransformerSeq2Seq(TransformerSeq2SeqConfig(
                tgt_vocab_size=tgt_vocab_size, src_vocab_size=src_vocab_size, embedding_size=self.embedding_size,
                hidden_size=t.hidden_size, num_layers=t.num_layers, num_heads=t.num_heads, ff_size=t.ff_size,
                dropout=self.dropout, norm=t.norm, norm_position=t.norm_position, max_len=max_len,
                bos_token=BOS, eos_token=EOS,
            ))
        return Seq2Seq(Seq2SeqConfig(
            tgt_vocab_size=tgt_vocab_size, src_vocab_size=src_vocab_size, embedding_size=self.embedding_size,
            encoder=self.encoder, decoder=self.decoder, context=self.context, attention=self.attention,
            attention_size=self.attention_size, teacher_forcing=self.teacher_forcing, dropout=self.dropout,
            bos_token=BOS, eos_token=EOS,
        ))


@dataclass(frozen=True)
class DecodeConfig:
    """How translations are decoded after training (and the defaults of evaluate/predict)."""

    beam_size: int = 1
    """1 = greedy decoding; more = beam search with this many beams."""
    length_penalty: float = 0.0
    """Beam search: GNMT's alpha, lp = ((5 + |Y|) / 6) ** alpha (0 ranks by log-probability alone; > 0 favours
    longer translations)."""
    max_new_tokens: int = 0
    """The most target units per translation (0 = max_target_length + 1, the end token included)."""

    def __post_init__(self) -> None:
        check_decoding(self.beam_size, self.max_new_tokens, "max_target_length + 1")


def _default_trainer() -> TrainerConfig:
    # The embedded recipe: 600 steps (about a minute on two idle CPU cores), capped at 100 s of training on a
    # busy machine; data, decoding the 2,000 held-out dates and saving add a few seconds.
    return TrainerConfig(
        optimizer="adamw", lr=3e-3, weight_decay=0.0, warmup_steps=50, schedule="constant", max_steps=600,
        max_epochs=0, max_time=100.0, clip_norm=1.0, eval_every=200, log_every=50, run_dir="runs/translate",
    )


@dataclass(frozen=True)
class TranslateConfig:
    """Train an encoder-decoder on sentence pairs and score its translations."""

    data: Optional[str] = None
    """Training pairs: a UTF-8 tab-separated file, source<TAB>target per line (more columns are ignored);
    None = the embedded task: dates in words and numbers in seven styles -> ISO dates (generated, no download)."""
    valid_data: Optional[str] = None
    """Validation pairs in the same format; None = hold out valid_fraction of --data (seeded)."""
    test_data: Optional[str] = None
    """Test pairs, decoded and scored after training (test_* metrics) and the default of 'rnnlab evaluate'."""
    source_column: int = 0
    """The 0-based column of the source side."""
    target_column: int = 1
    """The 0-based column of the target side."""
    reverse: bool = False
    """Swap the sides after reading: translate from the target column into the source column."""
    empty_pairs: Literal["error", "skip"] = "error"
    """A pair with an empty side: error (naming the line), or skip it with a warning (real corpora have a few)."""
    valid_fraction: float = 0.1
    """Without --valid_data: the fraction of --data held out for validation (seeded by trainer.seed)."""
    embedded_size: int = 20000
    """The embedded task only: training pairs to generate (the validation and test sets have 1000 each, drawn from
    dates that never occur in training)."""
    source_tokenizer: Units = "char"
    """Units of the source: char | word | bpe (byte-level BPE trained on the training pairs)."""
    target_tokenizer: Units = "char"
    """Units of the target: char | word | bpe."""
    source_vocab_size: int = 8000
    """word and bpe sources: the most token ids (char keeps every character of the training sources)."""
    target_vocab_size: int = 8000
    """word and bpe targets: the most token ids."""
    shared_vocab: bool = False
    """One tokenizer fitted on both sides (same units; source_vocab_size is its size): useful for BPE between
    related languages. The model still has separate source and target embeddings."""
    max_source_length: int = 100
    """Drop training and validation pairs whose source is longer than this, in source units (logged)."""
    max_target_length: int = 100
    """Drop training and validation pairs whose target is longer than this, in target units (logged)."""
    batch_size: int = 64
    """Pairs per batch (batches are bucketed by source length)."""
    model: TranslateModelConfig = field(default_factory=TranslateModelConfig)
    trainer: TrainerConfig = field(default_factory=_default_trainer)
    decode: DecodeConfig = field(default_factory=DecodeConfig)

    def __post_init__(self) -> None:
        check_positive(self, "batch_size", "max_source_length", "max_target_length", "embedded_size",
                       "source_vocab_size", "target_vocab_size")
        if not 0.0 <= self.valid_fraction < 1.0:
            raise ValueError(f"--valid_fraction must be in [0, 1), got {self.valid_fraction}")
        if self.data is None and (self.valid_data or self.test_data):
            raise ValueError("--valid_data and --test_data need --data (the embedded task generates its own)")
        if self.data is not None and self.valid_data is None and self.valid_fraction == 0.0:
            raise ValueError("give --valid_data or a --valid_fraction > 0: validation picks the metrics to report")
        if self.shared_vocab and self.source_tokenizer != self.target_tokenizer:
            raise ValueError(f"--shared_vocab needs the same units on both sides, got --source_tokenizer "
                             f"{self.source_tokenizer} and --target_tokenizer {self.target_tokenizer}")
        check_run_dir(self)


Config = TranslateConfig


def config_from_dict(data: dict) -> TranslateConfig:
    """Rebuild a :class:`TranslateConfig` from ``asdict(config)`` (as stored in a bundle's config.json)."""
    return from_dict(TranslateConfig, data)


@dataclass(frozen=True)
class EvaluateOptions:
    """Decoding for ``rnnlab evaluate``; every None means the bundle's own ``decode`` settings."""

    beam_size: Optional[int] = None
    """1 = greedy; more = beam search with this many beams."""
    length_penalty: Optional[float] = None
    """Beam search: GNMT's alpha (> 0 favours longer translations)."""
    max_new_tokens: Optional[int] = None
    """The most target units per translation."""
    batch_size: Optional[int] = None
    """Sentences decoded together (None = the training batch size)."""


@dataclass(frozen=True)
class PredictOptions:
    """Decoding for ``rnnlab predict``; every None means the bundle's own ``decode`` settings."""

    beam_size: Optional[int] = None
    """1 = greedy; more = beam search with this many beams."""
    length_penalty: Optional[float] = None
    """Beam search: GNMT's alpha (> 0 favours longer translations)."""
    max_new_tokens: Optional[int] = None
    """The most target units per translation."""
    attention: Optional[str] = None
    """Write the attention alignment of the first input as a heat map to this PNG (an rnn model with attention)."""


# --- data ------------------------------------------------------------------------------------------------

@dataclass
class _Side:
    """The pairs of one part of the data, with where they came from (for messages)."""

    pairs: list[Pair]
    name: str


def _read(path: str, config: TranslateConfig) -> _Side:
    pairs = read_pairs(path, source_column=config.source_column, target_column=config.target_column,
                       reverse=config.reverse, empty=config.empty_pairs)
    return _Side(pairs, str(expand(path)))


def _embedded(split: str, n: int, seed: int) -> _Side:
    return _Side([Pair(s, t, 0) for s, t in date_pairs(n, split, seed=seed)], f"{EMBEDDED} ({split})")


def embedded_text(config: TranslateConfig) -> str:
    """The embedded task's pairs (every split, for the run's seed and size), as the bundle fingerprints them."""
    sides = load_data(config)  # called only when config.data is None
    return "\n".join(f"{p.source}\t{p.target}" for side in sides if side for p in side.pairs)


def load_data(config: TranslateConfig) -> tuple[_Side, _Side, Optional[_Side]]:
    """(train, valid, test or None) as the config says."""
    seed = config.trainer.seed
    if config.data is None:
        return (_embedded("train", config.embedded_size, seed), _embedded("valid", EMBEDDED_HELD_OUT, seed),
                _embedded("test", EMBEDDED_HELD_OUT, seed))
    train = _read(config.data, config)
    if config.valid_data is not None:
        valid = _read(config.valid_data, config)
    else:
        kept, held = split_off(train.pairs, config.valid_fraction, seed)
        if not held:
            raise DataError(train.name, f"{len(train.pairs)} pair(s): too few to hold out validation pairs; "
                                        "give --valid_data")
        train, valid = _Side(kept, train.name), _Side(held, f"{train.name} (validation part)")
    test = _read(config.test_data, config) if config.test_data is not None else None
    return train, valid, test


def fit_tokenizers(config: TranslateConfig, pairs: Sequence[Pair]) -> tuple[Tokenizer, Tokenizer]:
    """(source, target) tokenizers fitted on the training pairs (the same object twice with --shared_vocab)."""
    sources, targets = [p.source for p in pairs], [p.target for p in pairs]
    if config.shared_vocab:
        shared = train_tokenizer(config.source_tokenizer, sources + targets, vocab_size=config.source_vocab_size)
        return shared, shared
    return (train_tokenizer(config.source_tokenizer, sources, vocab_size=config.source_vocab_size),
            train_tokenizer(config.target_tokenizer, targets, vocab_size=config.target_vocab_size))


def encode_target(tokenizer: Tokenizer, text: str) -> list[int]:
    """The target's ids with the end token: tokenizer id i -> i + SPECIALS, then EOS."""
    return [i + SPECIALS for i in tokenizer.encode(text)] + [EOS]


def decode_target(tokenizer: Tokenizer, ids: Iterable[int]) -> str:
    """Generated target ids -> text, up to the first end token (padding and begin tokens dropped)."""
    kept = []
    for i in ids:
        i = int(i)
        if i == EOS:
            break
        if i >= SPECIALS:
            kept.append(i - SPECIALS)
    return tokenizer.decode(kept)


def _examples(side: _Side, src_tok: Tokenizer, tgt_tok: Tokenizer, config: TranslateConfig) -> list[dict]:
    """Encoded pairs within the length limits; logs how many were dropped, a DataError when none is left."""
    examples, longest_src, longest_tgt = [], 0, 0
    for pair in side.pairs:
        x, y = src_tok.encode(pair.source), encode_target(tgt_tok, pair.target)
        longest_src, longest_tgt = max(longest_src, len(x)), max(longest_tgt, len(y) - 1)
        if 0 < len(x) <= config.max_source_length and len(y) - 1 <= config.max_target_length:
            examples.append({"x": x, "y": y})
    dropped = len(side.pairs) - len(examples)
    if not examples:
        raise DataError(side.name, f"all {len(side.pairs)} pairs are filtered out by length: the longest source has "
                                   f"{longest_src} {config.source_tokenizer} units (--max_source_length "
                                   f"{config.max_source_length}), the longest target {longest_tgt} "
                                   f"{config.target_tokenizer} units (--max_target_length {config.max_target_length}); "
                                   "raise those options")
    if dropped:
        log.info("%s: dropped %d of %d pairs longer than --max_source_length %d / --max_target_length %d units",
                 side.name, dropped, len(side.pairs), config.max_source_length, config.max_target_length)
    return examples


def _loader(examples: list[dict], batch_size: int, *, shuffle: bool):
    return make_loader(examples, batch_size, shuffle=shuffle, length_key="x", pad={"x": 0, "y": PAD},
                       lengths={"x": "lengths", "y": "y_lengths"})


# --- decoding and scoring --------------------------------------------------------------------------------

def _generate(model: nn.Module, src: Tensor, lengths: Tensor, *, max_new_tokens: int, beam_size: int,
              length_penalty: float) -> Tensor:
    """The one call of the structures' generate."""
    method = "beam" if beam_size > 1 else "greedy"
    return model.generate(src, lengths, max_new_tokens=max_new_tokens, method=method, beam_width=beam_size,
                          length_penalty=length_penalty)


def _source_batch(ids: list[list[int]], device) -> tuple[Tensor, Tensor]:
    lengths = torch.tensor([len(x) for x in ids], dtype=torch.long)
    src = torch.zeros(len(ids), int(lengths.max()), dtype=torch.long)
    for b, x in enumerate(ids):
        src[b, : len(x)] = torch.tensor(x, dtype=torch.long)
    return src.to(device), lengths.to(device)


def translate_ids(model: nn.Module, sources: Sequence[list[int]], *, batch_size: int, max_new_tokens: int,
                  beam_size: int = 1, length_penalty: float = 0.0) -> list[list[int]]:
    """Generated target ids (end token included when emitted) for each source id list, in the input order.

    Sources are decoded in batches of similar length (sorted), which changes nothing but the speed.
    """
    device = next(model.parameters()).device
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    out: list[list[int]] = [[] for _ in sources]
    for start in range(0, len(order), batch_size):
        chunk = order[start: start + batch_size]
        src, lengths = _source_batch([list(sources[i]) for i in chunk], device)
        tokens = _generate(model, src, lengths, max_new_tokens=max_new_tokens, beam_size=beam_size,
                           length_penalty=length_penalty)
        for row, i in enumerate(chunk):
            out[i] = tokens[row].tolist()
    return out


def _truncate(ids: list[int]) -> list[int]:
    """Up to and including the first end token."""
    return ids[: ids.index(EOS) + 1] if EOS in ids else ids


def score(hypotheses: Sequence[str], references: Sequence[str]) -> dict:
    """Corpus BLEU and chrF (sacrebleu) and exact match, all in percent, and the number of pairs."""
    import sacrebleu

    if len(hypotheses) != len(references) or not references:
        raise ValueError(f"score needs as many hypotheses as references (at least one), got "
                         f"{len(hypotheses)} and {len(references)}")
    exact = sum(h.strip() == r.strip() for h, r in zip(hypotheses, references, strict=True))
    return {
        "bleu": sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score,
        "chrf": sacrebleu.corpus_chrf(list(hypotheses), [list(references)]).score,
        "exact_match": 100.0 * exact / len(references),
        "pairs": len(references),
    }


def score_pairs(model: nn.Module, src_tok: Tokenizer, tgt_tok: Tokenizer, pairs: Sequence[Pair], *,
                batch_size: int, decode: DecodeConfig, max_target_length: int) -> dict:
    """Translate every pair's source and score the translations against the targets (see :func:`score`)."""
    kept = [p for p in pairs if src_tok.encode(p.source)]
    ids = translate_ids(model, [src_tok.encode(p.source) for p in kept], batch_size=batch_size,
                        max_new_tokens=decode.max_new_tokens or max_target_length + 1, beam_size=decode.beam_size,
                        length_penalty=decode.length_penalty)
    return score([decode_target(tgt_tok, t) for t in ids], [p.target for p in kept])


# --- train, evaluate, predict ----------------------------------------------------------------------------

def _max_positions(config: TranslateConfig) -> int:
    return max(1024, config.max_source_length + 1, config.max_target_length + 2)


@locked
def train(config: TranslateConfig) -> Path:
    """Train an encoder-decoder as ``config`` says; returns the bundle's path (``<run_dir>/bundle``)."""
    train_side, valid_side, test_side = load_data(config)
    src_tok, tgt_tok = fit_tokenizers(config, train_side.pairs)
    train_examples = _examples(train_side, src_tok, tgt_tok, config)
    valid_examples = _examples(valid_side, src_tok, tgt_tok, config)
    log.info("pairs: %d for training, %d for validation%s; vocabularies: %d source, %d target %s units",
             len(train_examples), len(valid_examples), f", {len(test_side.pairs)} for test" if test_side else "",
             src_tok.vocab_size, tgt_tok.vocab_size, config.target_tokenizer)

    torch.manual_seed(config.trainer.seed)
    model = config.model.build(src_tok.vocab_size, tgt_tok.vocab_size + SPECIALS, _max_positions(config))
    log.info("model: %s, %d parameters", type(model).__name__, sum(p.numel() for p in model.parameters()))
    metrics = dict(Trainer(config.trainer).fit(
        model, _loader(train_examples, config.batch_size, shuffle=True),
        _loader(valid_examples, config.batch_size, shuffle=False)))

    model.eval()
    kept_valid = [p for p in valid_side.pairs if _within(p, src_tok, tgt_tok, config)]
    parts = [("valid", kept_valid)] + ([("test", test_side.pairs)] if test_side else [])
    for prefix, pairs in parts:
        scores = score_pairs(model, src_tok, tgt_tok, pairs, batch_size=config.batch_size, decode=config.decode,
                             max_target_length=config.max_target_length)
        metrics.update({f"{prefix}_{k}": v for k, v in scores.items()})
        log.info("%s: exact match %.2f%%, chrF %.2f, BLEU %.2f on %d pairs", prefix, scores["exact_match"],
                 scores["chrf"], scores["bleu"], scores["pairs"])
    assets = {"source_vocab": src_tok.to_json(), "target_vocab": tgt_tok.to_json()}
    return save_task_bundle(TASK, config, model, assets=assets, metrics=metrics)


def _within(pair: Pair, src_tok: Tokenizer, tgt_tok: Tokenizer, config: TranslateConfig) -> bool:
    n = len(src_tok.encode(pair.source))
    return 0 < n <= config.max_source_length and len(tgt_tok.encode(pair.target)) <= config.max_target_length


@dataclass
class Translator:
    """A loaded translate bundle: the model (eval mode), both tokenizers and the training config."""

    model: nn.Module
    source: Tokenizer
    target: Tokenizer
    config: TranslateConfig
    path: Path


def load_translator(bundle_path: Union[str, Path]) -> Translator:
    bundle = load_task_bundle(bundle_path, TASK)
    if not isinstance(bundle.model, (Seq2Seq, TransformerSeq2Seq)):
        raise ValueError(f"{bundle.path} is not a translation bundle (it holds a {type(bundle.model).__name__})")
    for name in ("source_vocab", "target_vocab"):
        if name not in bundle.assets:
            raise ValueError(f"{bundle.path} has no {name}.json: it is not a complete translation bundle")
    return Translator(bundle.model, tokenizer_from_json(bundle.assets["source_vocab"]),
                      tokenizer_from_json(bundle.assets["target_vocab"]), config_from_dict(bundle.task_config),
                      bundle.path)


def _decoding(config: TranslateConfig, options: dict, allowed: type) -> DecodeConfig:
    """The bundle's decode settings overridden by the options that are not None."""
    names = {f.name for f in fields(allowed)}
    unknown = set(options) - names
    if unknown:
        raise TypeError(f"unknown translate option(s) {sorted(unknown)}; known: {sorted(names)}")
    given = {k: v for k, v in options.items() if v is not None and k in {f.name for f in fields(DecodeConfig)}}
    stored = config.decode
    return DecodeConfig(**{f.name: given.get(f.name, getattr(stored, f.name)) for f in fields(DecodeConfig)})


def evaluate(bundle_path: Union[str, Path], data: Optional[str] = None, **options) -> dict:
    """BLEU, chrF and exact match (percent) of a bundle's translations, and the number of pairs.

    ``data=None`` scores the test pairs of its training run (the embedded task's unseen dates, or --test_data),
    else its validation pairs; a path scores that file's pairs, read with the bundle's columns and --reverse.
    ``options``: :class:`EvaluateOptions` fields (None = the bundle's decode settings).
    """
    t = load_translator(bundle_path)
    batch_size = options.pop("batch_size", None)
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"--batch_size must be a positive integer, got {batch_size!r}")
    decode = _decoding(t.config, options, EvaluateOptions)
    if data is None:
        check_data_unchanged(bundle_path, t.config, sys.modules[__name__])
        _, valid_side, test_side = load_data(t.config)
        side = test_side or _Side([p for p in valid_side.pairs if _within(p, t.source, t.target, t.config)],
                                  valid_side.name)
    else:
        side = _read(data, t.config)
    scores = score_pairs(t.model, t.source, t.target, side.pairs, batch_size=batch_size or t.config.batch_size,
                         decode=decode, max_target_length=t.config.max_target_length)
    return {**scores, "data": side.name}


def predict(bundle_path: Union[str, Path], inputs: Iterable[str], **options) -> Iterator[dict]:
    """``{"source", "translation"}`` for each non-empty input (the bundle loaded once).

    ``options``: :class:`PredictOptions` fields; ``attention=PATH`` writes the first input's alignment as a PNG.
    """
    t = load_translator(bundle_path)
    plot = options.pop("attention", None)
    decode = _decoding(t.config, options, PredictOptions)
    if plot is not None:
        check_attention(t.model)
    limit = decode.max_new_tokens or t.config.max_target_length + 1
    first = True
    for text in inputs:
        source = text.strip()
        ids = t.source.encode(source) if source else []
        if not ids:
            continue
        out = _truncate(translate_ids(t.model, [ids], batch_size=1, max_new_tokens=limit, beam_size=decode.beam_size,
                                      length_penalty=decode.length_penalty)[0])
        if plot is not None and first:
            weights = attention_weights(t.model, ids, out)
            plot_attention(weights, [t.source.decode([i]) for i in ids],
                           [t.target.decode([i - SPECIALS]) if i >= SPECIALS else "</s>" for i in out], plot)
        first = False
        yield {"source": source, "translation": decode_target(t.target, out)}


def check_attention(model: nn.Module) -> None:
    """A ValueError unless the model has attention weights to show."""
    if not isinstance(model, Seq2Seq) or model.config.attention == "none":
        what = "a Transformer" if isinstance(model, TransformerSeq2Seq) else "a seq2seq model without attention"
        raise ValueError(f"--attention needs an rnn model with attention (--model.attention bahdanau, luong-dot or "
                         f"luong-general); this bundle holds {what}")


@torch.no_grad()
def attention_weights(model: Seq2Seq, source: list[int], target: list[int]) -> Tensor:
    """The decoder's attention over the source at each target step: (T, S), rows summing to 1.

    Re-runs the decoder on the translation it produced (eval mode, each step fed the token the decoding chose),
    which repeats the decoding's steps exactly, so these are the weights it used.
    """
    check_attention(model)
    was_training = model.training
    model.eval()
    try:
        src = torch.tensor([source], dtype=torch.long, device=next(model.parameters()).device)
        y = torch.tensor([target], dtype=torch.long, device=src.device)
        out = model({"x": src, "lengths": torch.tensor([len(source)], device=src.device), "y": y})
    finally:
        model.train(was_training)
    return out.attention[0]  # (T, S)



def plot_attention(weights: Tensor, source_units: Sequence[str], target_units: Sequence[str], path: str) -> Path:
    """Write the alignment heat map: target units down, source units across, darker = more attention."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = expand(path)
    if path.parent and not path.parent.exists():
        raise FileNotFoundError(f"--attention: no folder {path.parent} to write {path.name} in")
    show = lambda u: "␣" if u == " " else u  # noqa: E731  (a space would be an invisible tick label)
    T, S = weights.shape
    fig, ax = plt.subplots(figsize=(max(3.0, 0.3 * S + 1.5), max(2.5, 0.3 * T + 1.2)))
    image = ax.imshow(weights.float().cpu().numpy(), cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(S), [show(u) for u in source_units], fontsize=8)
    ax.set_yticks(range(T), [show(u) for u in target_units], fontsize=8)
    ax.set_xlabel("source")
    ax.set_ylabel("translation")
    fig.colorbar(image, ax=ax, fraction=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
