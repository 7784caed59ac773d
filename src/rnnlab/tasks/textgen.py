"""Text generation: a character (or word, BPE, or pre-tokenised word) language model trained by truncated BPTT,
then sampled.

``train(config)`` reads the corpus, holds out its end for validation (or reads ``valid_data``), fits a
tokenizer on the training part,
trains a :class:`~rnnlab.structures.LanguageModel` with the :class:`~rnnlab.training.Trainer` and saves a
bundle in ``<trainer.run_dir>/bundle`` (weights, ``config.json``, the tokenizer as ``vocab.json``,
``metrics.json``). ``generate`` samples from a bundle, ``evaluate`` scores it on a text.

Losses are in nats per token (the mean cross-entropy, natural log). Bits per character, the field's unit for
character models, is nats / ln 2 rescaled by tokens per character, so that char, word and BPE models compare:
``bpc = loss / ln 2 * tokens / chars`` (for the char tokenizer tokens = chars). With the word tokenizer,
rare words map to ``<unk>``, which makes its bpc optimistic.

Perplexity, the unit of word-level language modelling, is reported twice, each named by its unit:
``ppl_per_token = exp(loss)`` and ``ppl_per_word = exp(total NLL / words) = exp(loss * tokens / words)``,
where words are the text's whitespace-separated tokens plus one ``<eos>`` per line break (Mikolov's
convention on Penn Treebank: the end of a sentence is a word to predict). With the ``whitespace`` tokenizer a
token is a word, so both are the same number and match the field's published per-word perplexities; for
char and BPE models ``ppl_per_word`` is the same quantity reached through more, smaller predictions
(the tokens/words ratio is the whole text's, as for bits per character).

The text is never held whole: files are streamed, the tokenizer is fitted chunk by chunk, and the ids are
written in the smallest unsigned dtype to ``<run_dir>/cache`` (see :mod:`rnnlab.data.token_ids`), from where a
:class:`~rnnlab.training.memmap_stream.MemmapTokenStream` slices the batches. A resume reuses the cache.
"""
from __future__ import annotations

import logging
import math
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Literal, Optional, Union

import torch

from rnnlab.data.text import EMBEDDED, Piece, TextSource, corpus_sources, pydoc_corpus, split_lengths
from rnnlab.data.token_ids import TokenIds, cache_key, cached_ids, whole_tokens
from rnnlab.data.tokenize import EOS, Tokenizer, count_words, tokenizer_from_json, train_tokenizer
from rnnlab.data.tokenize import KINDS as TOKENIZERS
from rnnlab.structures import EncoderConfig, LanguageModel, LanguageModelConfig
from rnnlab.training import Trainer, TrainerConfig, ValidMetric, count_tokens
from rnnlab.training.checkpoint import from_dict
from rnnlab.training.config import MAX_SEED
from rnnlab.training.memmap_stream import MemmapTokenStream

from ._common import (
    check_data_unchanged,
    current_fingerprint,
    data_fingerprints,
    load_task_bundle,
    locked,
    save_task_bundle,
)

log = logging.getLogger(__name__)

TASK = "textgen"
DESCRIPTION = "language model on a text (char, word or BPE tokens), trained by truncated BPTT; generate from it"


EMBEDDED_DATA = "Python's documentation from the standard library (pydoc_data.topics): 79 documents, ~465k characters"


@dataclass(frozen=True)
class TextModelConfig:
    """The language model (the vocabulary size comes from the tokenizer)."""

    embedding_size: int = 64
    """E: the width of the token embeddings."""
    encoder: EncoderConfig = field(default_factory=lambda: EncoderConfig(kind="lstm", hidden_size=256))
    """The sequence model: must be causal (a unidirectional recurrent encoder, or a causal CNN/Transformer)."""
    tie_weights: bool = False
    """Share the embedding with the output layer (needs embedding_size == encoder.hidden_size)."""
    dropout: float = 0.0
    """Dropout on the embeddings and on the encoder's outputs."""

    def __post_init__(self) -> None:
        value = self.embedding_size
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"--model.embedding_size must be a positive integer, got {value!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"--model.dropout must be in [0, 1), got {self.dropout!r}")

    def build(self, vocab_size: int) -> LanguageModelConfig:
        return LanguageModelConfig(
            vocab_size=vocab_size, embedding_size=self.embedding_size, encoder=self.encoder,
            tie_weights=self.tie_weights, dropout=self.dropout,
        )


@dataclass(frozen=True)
class SampleConfig:
    """What to sample after training (and the defaults of ``rnnlab generate``)."""

    prompts: tuple[str, ...] = ("The ", "def ")
    """Each prompt starts one sample."""
    max_new_tokens: int = 200
    """Tokens generated after each prompt."""
    temperature: float = 0.8
    """Divides the logits: below 1 is more conservative, above 1 more adventurous; 0 = greedy."""
    top_k: Optional[int] = None
    """Sample only among the k most likely tokens (None = all)."""
    top_p: Optional[float] = None
    """Nucleus sampling: the smallest set of tokens whose probability reaches p (None = all)."""
    seed: int = 0
    """Seeds the sampling, so a sample can be reproduced (prompt i uses seed + i)."""

    def __post_init__(self) -> None:
        if self.max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {self.max_new_tokens}")
        if not self.temperature >= 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")


def _default_trainer() -> TrainerConfig:
    # The demo recipe: about two minutes on two CPU cores. precision auto: bf16 where the CPU or GPU computes it
    # natively (measured on an AVX512-BF16 CPU, benchmarks/trainer.py: 1.66x the speed, validation loss 1.359 vs
    # 1.356 after 400 steps), float32 elsewhere.
    return TrainerConfig(
        optimizer="adamw", lr=3e-3, weight_decay=0.01, warmup_steps=20, schedule="constant",
        max_steps=0, max_epochs=0, max_time=120.0, clip_norm=1.0, eval_every=100, log_every=50,
        precision="auto", run_dir="runs/textgen",
    )


@dataclass(frozen=True)
class TextgenConfig:
    """Train a language model on a text and sample from it."""

    data: Optional[str] = None
    """A UTF-8 text file, or a folder of .txt files (each one document); None (or 'pydoc') = the embedded
    corpus, Python's documentation from the standard library."""
    valid_data: Optional[str] = None
    """A separate validation text (file or folder), e.g. a corpus's valid.txt; then all of --data trains and
    --valid_fraction is not used."""
    test_data: Optional[str] = None
    """A test text (file or folder), e.g. a corpus's test.txt: scored once after training (test_* metrics)."""
    tokenizer: Literal["char", "word", "bpe", "whitespace"] = "char"
    """char | word (words, punctuation and spaces) | bpe (byte-level BPE trained on the corpus; needs the
    tokenizers package) | whitespace (a pre-tokenised corpus such as Penn Treebank: split on whitespace, <eos>
    at each line end, the corpus's own <unk> kept as the unknown token)."""
    vocab_size: int = 4096
    """word, bpe and whitespace: the most token ids (char keeps every character of the training text)."""
    valid_fraction: float = 0.1
    """Hold out the last fraction of the text's characters for validation (0 = no validation); not used with
    --valid_data."""
    batch_size: int = 32
    """B: parallel streams in each truncated-BPTT batch, per process (with --trainer.devices N the global batch
    is N·B)."""
    bptt: int = 64
    """k: time steps per chunk; the gradient stops at chunk boundaries, the state carries on."""
    model: TextModelConfig = field(default_factory=TextModelConfig)
    trainer: TrainerConfig = field(default_factory=_default_trainer)
    sample: SampleConfig = field(default_factory=SampleConfig)

    def __post_init__(self) -> None:
        if self.tokenizer not in TOKENIZERS:
            raise ValueError(f"tokenizer must be one of {TOKENIZERS}, got {self.tokenizer!r}")
        if not 0.0 <= self.valid_fraction < 1.0:
            raise ValueError(f"valid_fraction must be in [0, 1), got {self.valid_fraction}")
        for name in ("batch_size", "bptt", "vocab_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if not self.trainer.run_dir:
            raise ValueError("trainer.run_dir must be set: the bundle is saved in <run_dir>/bundle")


def config_from_dict(data: dict) -> TextgenConfig:
    """Rebuild a :class:`TextgenConfig` from ``asdict(config)`` (as stored in a bundle's config.json)."""
    return from_dict(TextgenConfig, data)


Config = TextgenConfig
EMBEDDED_NAMES = (EMBEDDED,)
"""--data values, besides None, that name the embedded corpus."""


def embedded_text(config: TextgenConfig) -> str:
    """The embedded corpus's text, as the bundle fingerprints it."""
    return "\n".join(d.text for d in pydoc_corpus())


@dataclass(frozen=True)
class PredictOptions:
    """How ``rnnlab predict``/``generate`` sample; every None means the bundle's own ``sample`` settings."""

    max_new_tokens: Optional[int] = None
    """Tokens to generate after the prompt."""
    temperature: Optional[float] = None
    """Divides the logits: below 1 is more conservative; 0 means greedy."""
    top_k: Optional[int] = None
    """Sample only among the k most likely tokens."""
    top_p: Optional[float] = None
    """Nucleus sampling with this probability mass."""
    method: Optional[Literal["sample", "greedy", "beam"]] = None
    """sample from the distribution, or greedy / beam search (default: sample)."""
    seed: Optional[int] = None
    """Seeds the sampling: the same bundle, prompt and options give the same text."""


@dataclass(frozen=True)
class EvaluateOptions:
    batch_size: Optional[int] = None
    """Parallel streams while scoring (None = the training batch size)."""


# --- data ------------------------------------------------------------------------------------------------

def _texts(sources: list[TextSource], pieces: list[Piece], kind: str) -> Iterator[str]:
    """The text of ``pieces`` in chunks that no token straddles: what the tokenizer is fitted on."""
    for i, a, b in pieces:
        yield from whole_tokens(sources[i].piece(a, b), kind)


def _ids(cache_dir: Path, name: str, sources: list[TextSource], pieces: list[Piece], tokenizer: Tokenizer,
         **key) -> TokenIds:
    """The token ids of ``pieces`` (one document each), from the cache or encoded into it."""
    key = cache_key(name=name, tokenizer=tokenizer.to_json(), **key)
    return cached_ids(cache_dir, name, key, tokenizer, lambda: (sources[i].piece(a, b) for i, a, b in pieces))


def _stream(ids: TokenIds, *, batch_size: int, bptt: int, shuffle_seed: Optional[int] = None,
            processes: int = 1) -> MemmapTokenStream:
    """A stream with at most ``batch_size`` rows per process, fewer when the text is too short for that many.
    With several processes the trainer gives each its own rows of the text (``StreamPosition.shard``)."""
    usable = ids.lengths >= 2
    if not usable.any():
        raise ValueError("the text holds too few tokens: every document needs at least 2")
    total = int(ids.lengths[usable].sum())
    rows = max(1, min(batch_size, total // (2 * bptt * processes) or 1))
    return MemmapTokenStream(ids.ids, ids.starts[usable], ids.lengths[usable], batch_size=rows, bptt=bptt,
                             shuffle_seed=shuffle_seed)


def _chars(pieces: Iterable[Piece]) -> int:
    return sum(b - a for _, a, b in pieces)


# --- train, evaluate, generate ---------------------------------------------------------------------------

@locked
def train(config: TextgenConfig) -> Path:
    """Train a language model as ``config`` says; returns the bundle's path (``<run_dir>/bundle``)."""
    sources = corpus_sources(config.data)
    if config.valid_data:
        train_docs, valid_sources = _whole(sources), corpus_sources(config.valid_data)
        valid_docs = _whole(valid_sources)
    else:
        train_docs, valid_docs = split_lengths([s.num_chars() for s in sources], config.valid_fraction)
        valid_sources = sources
    log.info("corpus: %d documents, %d characters for training, %d for validation",
             len(sources), _chars(train_docs), _chars(valid_docs))
    tokenizer = train_tokenizer(config.tokenizer, _texts(sources, train_docs, config.tokenizer),
                                vocab_size=config.vocab_size)
    key = {"data": current_fingerprint() or data_fingerprints(config, sys.modules[__name__]),
           "valid_fraction": config.valid_fraction}
    cache = Path(config.trainer.run_dir) / "cache"
    train_ids = _ids(cache, "train", sources, train_docs, tokenizer, **key)
    valid_ids = _ids(cache, "valid", valid_sources, valid_docs, tokenizer, **key) if valid_docs else None
    processes = config.trainer.devices * config.trainer.num_nodes
    train_stream = _stream(train_ids, batch_size=config.batch_size, bptt=config.bptt, shuffle_seed=config.trainer.seed,
                           processes=processes)
    valid_stream = (_stream(valid_ids, batch_size=config.batch_size, bptt=config.bptt, processes=processes)
                    if valid_docs else None)

    torch.manual_seed(config.trainer.seed)
    model = LanguageModel(config.model.build(tokenizer.vocab_size))
    log.info("model: %s tokenizer, V=%d, %d parameters", tokenizer.kind, tokenizer.vocab_size,
             sum(p.numel() for p in model.parameters()))
    metrics = dict(Trainer(config.trainer, metric=_perplexity(tokenizer)).fit(model, train_stream, valid_stream))
    if valid_docs and "valid_loss" in metrics:
        words = _words(valid_ids, valid_sources, valid_docs, tokenizer)
        metrics.update(_rates(float(metrics["valid_loss"]), valid_ids.tokens, valid_ids.chars, words, "valid_"))
        log.info("valid: %.4f nats/token, %.4f bits/char, perplexity %.2f per word", metrics["valid_loss"],
                 metrics["valid_bits_per_char"], metrics["valid_ppl_per_word"])
    if config.test_data:
        test_sources = corpus_sources(config.test_data)
        test_ids = _ids(cache, "test", test_sources, _whole(test_sources), tokenizer, **key)
        scored = _score(model, test_ids, asdict(config), None, _words(test_ids, test_sources,
                                                                       _whole(test_sources), tokenizer))
        metrics.update({f"test_{k}": v for k, v in scored.items()})
        log.info("test: %.4f nats/token, perplexity %.2f per word", scored["loss"], scored["ppl_per_word"])

    return save_task_bundle(TASK, config, model, assets={"vocab": tokenizer.to_json()}, metrics=metrics)


def _perplexity(tokenizer: Tokenizer) -> ValidMetric:
    """The curve of validation perplexity in log.csv and curves.png (per word for the whitespace tokenizer,
    where a token is a word; per token otherwise)."""
    unit = "word" if tokenizer.kind == "whitespace" else "token"
    return ValidMetric(f"valid_ppl_per_{unit}", _exp)


def _rates(loss: float, tokens: int, chars: int, words: int, prefix: str = "") -> dict:
    """nats/token -> bits per token and per character, perplexity per token and per word (module docstring)."""
    bits = loss / math.log(2)
    return {
        f"{prefix}bits_per_token": bits,
        f"{prefix}bits_per_char": bits * tokens / max(chars, 1),
        f"{prefix}tokens_per_char": tokens / max(chars, 1),
        f"{prefix}ppl_per_token": _exp(loss),
        f"{prefix}ppl_per_word": _exp(loss * tokens / max(words, 1)),
        f"{prefix}words": words,
    }


def _exp(x: float) -> float:
    return math.exp(x) if x < 700 else math.inf


def _whole(sources: list[TextSource]) -> list[Piece]:
    """Every document of ``sources``, whole."""
    return [(i, 0, s.num_chars()) for i, s in enumerate(sources)]


def _words(ids: TokenIds, sources: list[TextSource], pieces: list[Piece], tokenizer: Tokenizer) -> int:
    """The words of ``pieces`` (whitespace-separated tokens plus line breaks): the tokens themselves for the
    whitespace tokenizer, else counted in one streamed pass over the text."""
    if tokenizer.kind == "whitespace":
        return ids.tokens
    return sum(count_words(chunk) for chunk in _texts(sources, pieces, "whitespace"))


def load_textgen(bundle_path: Union[str, Path]) -> tuple[LanguageModel, Tokenizer, dict]:
    """(model in eval mode, tokenizer, the bundle's config dict) of a textgen bundle."""
    bundle = load_task_bundle(bundle_path, TASK)
    if not isinstance(bundle.model, LanguageModel) or bundle.vocab is None:
        raise ValueError(f"{bundle.path} is not a text-generation bundle (it holds a {type(bundle.model).__name__})")
    where = bundle.path / "vocab.json"
    try:
        tokenizer = tokenizer_from_json(bundle.vocab)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{where} is not a valid tokenizer: {e}") from None
    if tokenizer.vocab_size != bundle.model.config.vocab_size:
        raise ValueError(f"{where} holds {tokenizer.vocab_size} tokens but the model was built for "
                         f"{bundle.model.config.vocab_size}: the bundle's files do not belong together")
    return bundle.model, tokenizer, bundle.config


def evaluate(bundle_path: Union[str, Path], data: Optional[str] = None, *, batch_size: Optional[int] = None) -> dict:
    """Score a bundle: ``loss`` (nats/token), ``bits_per_token``, ``bits_per_char``, ``tokens``, ``chars``.

    Also ``ppl_per_token`` and ``ppl_per_word`` (perplexity in each unit; see the module docstring) and ``words``.
    ``data=None`` scores the validation text the bundle was trained with (its ``valid_data``, or the held-out end
    of the corpus: the same split as in training, so ``loss`` equals the bundle's ``valid_loss``); a path
    scores the whole of that text (e.g. a corpus's test.txt).
    ``batch_size``: parallel streams (None = the training batch size). Each stream starts from a zero state,
    so more streams score slightly worse.
    """
    model, tokenizer, config = load_textgen(bundle_path)
    textgen = config.get(TASK, {}) if isinstance(config, dict) else {}
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"--batch_size must be a positive integer, got {batch_size!r}")
    module, stored = sys.modules[__name__], config_from_dict(textgen)
    if data is None:
        check_data_unchanged(bundle_path, stored, module)
        fraction = textgen.get("valid_fraction") or TextgenConfig.valid_fraction  # a run without validation: 10%
        if stored.valid_data:
            sources = corpus_sources(stored.valid_data)
            pieces = _whole(sources)
        else:
            sources = corpus_sources(stored.data)
            pieces = split_lengths([s.num_chars() for s in sources], fraction)[1]
        name, key = "valid", {"data": data_fingerprints(stored, module), "valid_fraction": fraction}
    else:
        sources = corpus_sources(data)
        name, pieces = "all", _whole(sources)
        key = {"data": data_fingerprints(replace(stored, data=data, valid_data=None, test_data=None), module)}
    with ExitStack() as stack:
        ids = _ids(_cache_dir(bundle_path, stack), name, sources, pieces, tokenizer, **key)
        return _score(model, ids, textgen, batch_size, _words(ids, sources, pieces, tokenizer))


def _cache_dir(bundle_path: Union[str, Path], stack: ExitStack) -> Path:
    """``<run_dir>/cache`` beside the bundle (where training left the validation ids), or a temporary folder
    when that cannot be written."""
    cache = Path(bundle_path).resolve().parent / "cache"
    try:
        cache.mkdir(exist_ok=True)
        if os.access(cache, os.W_OK):
            return cache
    except OSError:
        pass
    return Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rnnlab-ids-")))


def _score(model: LanguageModel, ids: TokenIds, textgen: dict, batch_size: Optional[int], words: int) -> dict:
    bptt = int(textgen.get("bptt", TextgenConfig.bptt))
    batch_size = int(batch_size or textgen.get("batch_size", TextgenConfig.batch_size))
    stream = _stream(ids, batch_size=batch_size, bptt=bptt)
    tokens = sum(count_tokens(batch) for batch in stream)
    if tokens == 0:
        raise ValueError("the text is too short to score: no token has a next token")
    loss = Trainer(TrainerConfig(device=str(next(model.parameters()).device.type))).evaluate(model, stream)
    return {"loss": loss, **_rates(loss, ids.tokens, ids.chars, words), "tokens": tokens, "chars": ids.chars}


def special_ids(tokenizer: Tokenizer) -> list[int]:
    """The ids of the tokens that are no text (``<unk>`` and any specials but ``<eos>``, which is a line break):
    generation never emits them."""
    vocab = getattr(tokenizer, "vocab", None)
    return [] if vocab is None else sorted({vocab.unk_id, *(vocab.id(s) for s in vocab.specials if s != EOS)})


def warn_unknown(tokenizer: Tokenizer, prompt: str, warned: Optional[set] = None) -> None:
    """Log a warning naming the characters (or words) of ``prompt`` never seen in training: the model reads them
    as ``<unk>``. ``warned`` collects the ones already named, so each is named once."""
    vocab = getattr(tokenizer, "vocab", None)
    if vocab is None:  # byte-level BPE: nothing is unknown
        return
    pieces = prompt if tokenizer.kind == "char" else tokenizer.split(prompt)
    unseen = sorted({p for p in pieces if p not in vocab} - (warned if warned is not None else set()))
    if unseen:
        log.warning("the prompt holds %s never seen in training, read as %s: %s",
                    "characters" if tokenizer.kind == "char" else "words", vocab.unk,
                    ", ".join(repr(p) for p in unseen))
        if warned is not None:
            warned.update(unseen)


def generate_text(model: LanguageModel, tokenizer: Tokenizer, prompt: str, sample: SampleConfig, *, seed: int = 0,
                  method: str = "sample", warned: Optional[set] = None) -> str:
    """``prompt`` followed by up to ``sample.max_new_tokens`` sampled tokens, as text (never ``<unk>``).
    Characters of the prompt never seen in training are named in a warning (once each, with ``warned``)."""
    if not isinstance(prompt, str) or not prompt:
        raise ValueError(f"prompt must be a non-empty string, got {prompt!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"--seed must be an integer in [0, {MAX_SEED}], got {seed!r}")
    warn_unknown(tokenizer, prompt, warned)
    ids = tokenizer.encode(prompt)
    if not ids:
        raise ValueError(f"the prompt {prompt!r} encodes to no tokens")
    if sample.max_new_tokens == 0:
        return prompt
    if sample.temperature == 0:
        method = "greedy"
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    out = model.generate(
        torch.tensor([ids], dtype=torch.long, device=device), max_new_tokens=sample.max_new_tokens, method=method,
        temperature=sample.temperature or 1.0, top_k=sample.top_k, top_p=sample.top_p, generator=generator,
        banned_tokens=special_ids(tokenizer),
    )
    text = tokenizer.decode(out[0, len(ids):].tolist())
    if tokenizer.kind == "whitespace" and text and not prompt[-1].isspace() and not text.startswith("\n"):
        text = " " + text  # its tokens are joined by spaces: the prompt's last word and the first new one too
    return prompt + text


def _sampler(config: dict, options: dict) -> tuple[SampleConfig, int, str]:
    """The bundle's sample settings overridden by the options that are not None -> (sample, seed, method)."""
    unknown = set(options) - {f.name for f in fields(PredictOptions)}
    if unknown:
        raise TypeError(f"unknown textgen option(s) {sorted(unknown)}; known: "
                        f"{[f.name for f in fields(PredictOptions)]}")
    stored = config.get(TASK, {}).get("sample", {}) if isinstance(config.get(TASK), dict) else {}
    sample = from_dict(SampleConfig, stored) if stored else SampleConfig()
    given = {k: v for k, v in options.items() if v is not None and k in {f.name for f in fields(SampleConfig)}}
    sample = replace(sample, **given)
    seed = options.get("seed")
    return sample, sample.seed if seed is None else seed, options.get("method") or "sample"


def generate(bundle_path: Union[str, Path], prompt: str, **options) -> str:
    """Load a bundle and continue ``prompt``; ``options`` are :class:`PredictOptions` fields (None = the bundle's)."""
    model, tokenizer, config = load_textgen(bundle_path)
    sample, seed, method = _sampler(config, options)
    return generate_text(model, tokenizer, prompt, sample, seed=seed, method=method)


def predict(bundle_path: Union[str, Path], inputs: Iterable[str], **options) -> Iterator[dict]:
    """``{"prompt", "text"}`` for each non-empty prompt (text = the prompt and its continuation); loaded once."""
    model, tokenizer, config = load_textgen(bundle_path)
    sample, seed, method = _sampler(config, options)
    warned: set = set()
    for prompt in inputs:
        if prompt:
            text = generate_text(model, tokenizer, prompt, sample, seed=seed, method=method, warned=warned)
            yield {"prompt": prompt, "text": text}
