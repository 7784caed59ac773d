"""Image captioning: a CNN reads the image, an LSTM writes the caption, with or without attention; BLEU.

``train(config)`` reads a captions file (CSV or JSON naming images in a folder, several captions per image;
see :mod:`rnnlab.data.captions`) or generates the embedded scenes (coloured shapes in places, captioned by a
small grammar with four paraphrases each, :mod:`rnnlab.data.scenes`) when no ``--data`` is given. Images are
resized to ``image_size`` squares (RGB or grey); the data is split by image, so no image is both trained on and
scored. A word tokenizer is fitted on the training captions; a :class:`~rnnlab.structures.Captioner` (a small
CNN and an LSTM decoder: image at the first step or at every step, soft attention over the CNN's feature
positions or none) is trained on every (image, caption) pair with the :class:`~rnnlab.training.Trainer`; the
validation and test images are captioned greedily or by beam search and scored.

Metrics (``evaluate``, and ``valid_*``/``test_*`` in the bundle's metrics.json): corpus BLEU from ``sacrebleu``
(13a tokenisation) of one generated caption per image against *all* the reference captions of that image, its
n-gram precisions (``precision_1`` … ``precision_4``, percent) and brevity penalty.

``predict`` takes image paths and prints one caption per image; ``--attention out.png`` draws where the model
looked for each word of the first image's caption.

Token ids: 0 pads, 1 begins, 2 ends a caption; the tokenizer's ids follow from 3 (as in ``translate``).
"""
from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal, Optional, Union

import numpy as np
import torch
from torch import Tensor

from rnnlab.data.batching import make_loader
from rnnlab.data.captions import CaptionedImage, load_image, read_captions
from rnnlab.data.errors import DataError
from rnnlab.data.fingerprint import resolve
from rnnlab.data.scenes import render, scenes
from rnnlab.data.tokenize import Tokenizer, tokenizer_from_json, train_tokenizer
from rnnlab.structures import Captioner, CaptionerConfig, DecoderConfig
from rnnlab.structures.one_to_many import Condition
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
from .translate import EOS, SPECIALS, decode_target, encode_target

log = logging.getLogger(__name__)

TASK = "caption"
DESCRIPTION = "image captioning (images + a CSV/JSON of captions) by a CNN and an LSTM with attention; BLEU"
EMBEDDED_DATA = ("generated scenes of 1-3 coloured shapes in places, four paraphrased captions each "
                 "(relations left of / above), test images never seen in training")
EMBEDDED = "<embedded scenes>"
Colour = Literal["rgb", "grey"]


# --- configuration ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CaptionModelConfig:
    """The CNN image encoder and the LSTM caption decoder (the vocabulary size comes from the tokenizer)."""

    channels: tuple[int, ...] = (16, 32, 64)
    """The CNN's channels per block (conv 3x3, ReLU, max-pool 2): the feature map that attention reads is
    image_size / 2**len(channels) on a side."""
    kernel_size: int = 3
    """The CNN's kernel size (odd)."""
    feature_size: int = 128
    """F: the size of the image vector (the pooled CNN features through a Linear)."""
    coords: bool = True
    """Give the CNN each pixel's x and y as two more input channels (CoordConv), so its features know where."""
    embedding_size: int = 64
    """The width of the word embeddings (and of the image vector at the decoder's input)."""
    decoder: DecoderConfig = field(default_factory=lambda: DecoderConfig(cell="lstm", hidden_size=128))
    """The decoder's cell (lstm | gru | rnn), width and layers."""
    condition: Condition = "first"
    """first: the image vector is a decoder input at the first step only; every: at every step."""
    init_state: bool = True
    """Start the decoder from h_0 = tanh(W_s v), v the image vector (Show and Tell)."""
    attention: Literal["none", "soft"] = "soft"
    """soft: attend over the CNN's feature positions at every word (Show, Attend and Tell) | none: the image
    vector alone."""
    attention_size: int = 0
    """soft: the width inside the additive attention score (0 = decoder.hidden_size)."""
    attention_gate: bool = False
    """soft: scale the attended context by a learned gate β_t = σ(w h_{t-1}) (Xu et al., 2015, §4.2.1)."""
    attention_penalty: float = 0.0
    """soft: λ of the doubly stochastic regulariser λ Σ_s (1 - Σ_t α_ts)², which asks every position to be
    looked at about once per caption (0 = off; Xu et al. use 1)."""
    dropout: float = 0.0
    """Dropout on the word embeddings, the decoder outputs and the pooled image features."""

    def build(self, vocab_size: int, in_channels: int) -> Captioner:
        return Captioner(CaptionerConfig(
            vocab_size=vocab_size, in_channels=in_channels, channels=tuple(self.channels),
            kernel_size=self.kernel_size, feature_size=self.feature_size, coords=self.coords,
            embedding_size=self.embedding_size, decoder=self.decoder, condition=self.condition,
            init_state=self.init_state, attention=self.attention, attention_size=self.attention_size,
            attention_gate=self.attention_gate, attention_penalty=self.attention_penalty, dropout=self.dropout,
        ))


@dataclass(frozen=True)
class DecodeConfig:
    """How captions are decoded after training (and the defaults of evaluate/predict)."""

    beam_size: int = 1
    """1 = greedy decoding; more = beam search with this many beams."""
    length_penalty: float = 0.0
    """Beam search: GNMT's alpha, lp = ((5 + |Y|) / 6) ** alpha (0 ranks by log-probability alone)."""
    max_new_tokens: int = 0
    """The most words per caption (0 = max_length + 1, the end token included)."""

    def __post_init__(self) -> None:
        check_decoding(self.beam_size, self.max_new_tokens, "max_length + 1")


def _default_trainer() -> TrainerConfig:
    # The embedded recipe: 1,400 steps of 32 pairs, about 70 s of CPU time (one thread), capped at 100 s of training
    # on a busy machine; drawing the scenes, captioning the 600 held-out images and saving add a few seconds.
    return TrainerConfig(
        optimizer="adamw", lr=3e-3, weight_decay=0.0, warmup_steps=50, schedule="cosine", max_steps=1400,
        max_epochs=0, max_time=100.0, clip_norm=1.0, eval_every=0, log_every=50, run_dir="runs/caption",
    )


@dataclass(frozen=True)
class CaptionConfig:
    """Train an image captioner and score its captions by BLEU."""

    data: Optional[str] = None
    """The captions file: a CSV with a header naming 'image' and 'caption' columns (Flickr8k's captions.txt),
    or a JSON list of {"image", "caption"} or the COCO captions layout; several captions per image allowed.
    None = the embedded scenes (generated, no download)."""
    images: Optional[str] = None
    """The folder the image names are relative to; None = the captions file's own folder."""
    valid_data: Optional[str] = None
    """Validation captions in the same format (same images folder); None = hold out valid_fraction of the images."""
    test_data: Optional[str] = None
    """Test captions, scored after training (test_* metrics) and the default of 'rnnlab evaluate'; None = hold
    out test_fraction of the images."""
    valid_fraction: float = 0.1
    """Without --valid_data: the fraction of --data's images held out for validation (seeded by trainer.seed)."""
    test_fraction: float = 0.1
    """Without --test_data: the fraction of --data's images held out for testing (0 = no test set)."""
    image_size: int = 32
    """Every image is resized to image_size x image_size pixels."""
    colour: Colour = "rgb"
    """rgb (3 channels) | grey (1 channel)."""
    lowercase: bool = True
    """Lower-case the captions (training and references)."""
    vocab_size: int = 5000
    """The most words kept (the most frequent in the training captions; the rest become <unk>)."""
    max_length: int = 30
    """Drop training captions longer than this many tokens (logged)."""
    embedded_size: int = 4000
    """The embedded task only: training images to generate."""
    embedded_held_out: int = 300
    """The embedded task only: validation images and test images to generate (each; never seen in training)."""
    batch_size: int = 32
    """(image, caption) pairs per batch."""
    model: CaptionModelConfig = field(default_factory=CaptionModelConfig)
    trainer: TrainerConfig = field(default_factory=_default_trainer)
    decode: DecodeConfig = field(default_factory=DecodeConfig)

    def __post_init__(self) -> None:
        check_positive(self, "image_size", "vocab_size", "max_length", "embedded_size", "embedded_held_out",
                       "batch_size")
        for name in ("valid_fraction", "test_fraction"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"--{name} must be in [0, 1), got {getattr(self, name)}")
        if self.valid_fraction + self.test_fraction >= 1.0:
            raise ValueError("--valid_fraction + --test_fraction must leave images for training (sum < 1)")
        if self.data is None and (self.valid_data or self.test_data or self.images):
            raise ValueError("--valid_data, --test_data and --images need --data (the embedded task generates its own)")
        if self.data is not None and self.valid_data is None and self.valid_fraction == 0.0:
            raise ValueError("give --valid_data or a --valid_fraction > 0: validation picks the metrics to report")
        check_run_dir(self)


Config = CaptionConfig


def config_from_dict(data: dict) -> CaptionConfig:
    """Rebuild a :class:`CaptionConfig` from ``asdict(config)`` (as stored in a bundle's config.json)."""
    return from_dict(CaptionConfig, data)


@dataclass(frozen=True)
class EvaluateOptions:
    """Decoding for ``rnnlab evaluate``; every None means the bundle's own settings."""

    beam_size: Optional[int] = None
    """1 = greedy; more = beam search with this many beams."""
    length_penalty: Optional[float] = None
    """Beam search: GNMT's alpha (> 0 favours longer captions)."""
    max_new_tokens: Optional[int] = None
    """The most words per caption."""
    batch_size: Optional[int] = None
    """Images captioned together (None = the training batch size)."""
    images: Optional[str] = None
    """With --data: the folder its image names are relative to (None = the bundle's --images, else the file's
    own folder)."""


@dataclass(frozen=True)
class PredictOptions:
    """Decoding for ``rnnlab predict BUNDLE IMAGE ...``; every None means the bundle's own settings."""

    beam_size: Optional[int] = None
    """1 = greedy; more = beam search with this many beams."""
    length_penalty: Optional[float] = None
    """Beam search: GNMT's alpha (> 0 favours longer captions)."""
    max_new_tokens: Optional[int] = None
    """The most words per caption."""
    attention: Optional[str] = None
    """Write where the model looked for each word of the first image's caption to this PNG (attention models)."""


# --- data ------------------------------------------------------------------------------------------------

@dataclass
class _Part:
    """The images of one part of the data (uint8 (C, H, W) each), their reference captions and names."""

    images: list[Tensor]
    captions: list[tuple[str, ...]]
    name: str


def _channels(config: CaptionConfig) -> int:
    return 1 if config.colour == "grey" else 3


def _embedded(split: str, n: int, config: CaptionConfig) -> _Part:
    seed = config.trainer.seed * 3 + ("train", "valid", "test").index(split)
    drawn = scenes(n, seed)
    rng = np.random.default_rng(seed)
    images = []
    for scene, _ in drawn:
        pixels = render(scene, config.image_size, rng)  # (3, H, W) uint8
        if config.colour == "grey":
            pixels = pixels.mean(axis=0, keepdims=True).round().astype(np.uint8)
        images.append(torch.from_numpy(pixels))
    return _Part(images, [tuple(caps) for _, caps in drawn], f"{EMBEDDED} ({split})")


def embedded_text(config: CaptionConfig) -> str:
    """The embedded task's captions (every split, for the run's seed and sizes), as the bundle fingerprints them."""
    seed = config.trainer.seed * 3
    held_out = config.embedded_held_out
    parts = [scenes(config.embedded_size, seed), scenes(held_out, seed + 1), scenes(held_out, seed + 2)]
    lines = [f"image_size={config.image_size} colour={config.colour}"]
    lines += ["\t".join(caps) for part in parts for _, caps in part]
    return "\n".join(lines)


def _load(items: Sequence[CaptionedImage], name: str, config: CaptionConfig) -> _Part:
    images = [load_image(item.image, size=config.image_size, colour=config.colour) for item in items]
    return _Part(images, [item.captions for item in items], name)


def _read(path: str, config: CaptionConfig, images: Optional[str] = None) -> list[CaptionedImage]:
    return read_captions(path, images=images if images is not None else config.images, lowercase=config.lowercase)


def load_data(config: CaptionConfig) -> tuple[_Part, _Part, Optional[_Part]]:
    """(train, valid, test or None) as the config says; a file's images are split by image, never by caption."""
    if config.data is None:
        held_out = config.embedded_held_out
        return (_embedded("train", config.embedded_size, config), _embedded("valid", held_out, config),
                _embedded("test", held_out, config))
    items = _read(config.data, config)
    seed = config.trainer.seed
    test_items = None
    if config.test_data is not None:
        test_items = _read(config.test_data, config)
    elif config.test_fraction > 0:
        items, test_items = split_off(items, config.test_fraction, seed + 1)
    if config.valid_data is not None:
        valid_items = _read(config.valid_data, config)
    else:
        items, valid_items = split_off(items, config.valid_fraction / (1.0 - config.test_fraction), seed)
    if not items or not valid_items:
        raise DataError(config.data, f"{len(items) + len(valid_items) + len(test_items or [])} image(s) are too few "
                                     "to split into training, validation and test images: give more, or "
                                     "--valid_data/--test_data files")
    data = str(Path(config.data).expanduser())
    test = _load(test_items, f"{data} (test images)" if config.test_data is None else config.test_data, config) \
        if test_items else None
    valid = _load(valid_items, config.valid_data or f"{data} (validation images)", config)
    return _load(items, data, config), valid, test


def _examples(part: _Part, tokenizer: Tokenizer, max_length: int) -> list[dict]:
    """One example per (image, caption) pair within max_length; logs how many were dropped."""
    examples, total = [], 0
    for image, caps in zip(part.images, part.captions, strict=True):
        for caption in caps:
            total += 1
            y = encode_target(tokenizer, caption)
            if len(y) - 1 <= max_length:
                examples.append({"images": image, "y": y})
    if not examples:
        raise DataError(part.name, f"every caption is longer than --max_length {max_length} tokens: raise it")
    if len(examples) < total:
        log.info("%s: dropped %d of %d captions longer than --max_length %d", part.name, total - len(examples),
                 total, max_length)
    return examples


def _loader(examples: list[dict], batch_size: int, *, shuffle: bool):
    return make_loader(examples, batch_size, shuffle=shuffle, length_key="y", pad={"y": 0}, lengths={"y": "lengths"})


# --- decoding and scoring --------------------------------------------------------------------------------

def caption_ids(model: Captioner, images: Sequence[Tensor], *, batch_size: int, decode: DecodeConfig,
                max_new_tokens: int) -> list[list[int]]:
    """Generated caption ids (up to and including the end token) for each image, in order."""
    device = next(model.parameters()).device
    method = "beam" if decode.beam_size > 1 else "greedy"
    out = []
    for start in range(0, len(images), batch_size):
        batch = torch.stack(list(images[start: start + batch_size])).to(device)  # (B, C, H, W)
        tokens = model.generate(batch, max_new_tokens=decode.max_new_tokens or max_new_tokens, method=method,
                                beam_width=decode.beam_size, length_penalty=decode.length_penalty)
        for row in tokens.tolist():
            out.append(row[: row.index(EOS) + 1] if EOS in row else row)
    return out


def score(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> dict:
    """Corpus BLEU (sacrebleu) of one caption per image against all of that image's references; its n-gram
    precisions and brevity penalty; the number of images."""
    import sacrebleu

    if len(hypotheses) != len(references) or not references or not all(references):
        raise ValueError(f"score needs one hypothesis and at least one reference per image, got {len(hypotheses)} "
                         f"hypotheses for {len(references)} reference lists")
    most = max(len(r) for r in references)
    # sacrebleu takes reference *streams*; an image with fewer references fills the rest with "" (ignored)
    streams = [[r[k] if k < len(r) else "" for r in references] for k in range(most)]
    bleu = sacrebleu.corpus_bleu(list(hypotheses), streams)
    out = {"bleu": bleu.score}
    out.update({f"precision_{n}": p for n, p in enumerate(bleu.precisions, start=1)})
    out.update({"brevity_penalty": bleu.bp, "images": len(references)})
    return out


def score_part(model: Captioner, tokenizer: Tokenizer, part: _Part, *, batch_size: int, decode: DecodeConfig,
               max_length: int) -> dict:
    ids = caption_ids(model, part.images, batch_size=batch_size, decode=decode, max_new_tokens=max_length + 1)
    return score([decode_target(tokenizer, i) for i in ids], part.captions)


# --- train, evaluate, predict ----------------------------------------------------------------------------

@locked
def train(config: CaptionConfig) -> Path:
    """Train a captioner as ``config`` says; returns the bundle's path (``<run_dir>/bundle``)."""
    train_part, valid_part, test_part = load_data(config)
    tokenizer = train_tokenizer("word", [c for caps in train_part.captions for c in caps], vocab_size=config.vocab_size)
    train_examples = _examples(train_part, tokenizer, config.max_length)
    valid_examples = _examples(valid_part, tokenizer, config.max_length)
    log.info("images: %d for training (%d captions), %d for validation%s; %d words", len(train_part.images),
             len(train_examples), len(valid_part.images), f", {len(test_part.images)} for test" if test_part else "",
             tokenizer.vocab_size)

    torch.manual_seed(config.trainer.seed)
    model = config.model.build(tokenizer.vocab_size + SPECIALS, _channels(config))
    log.info("model: Captioner (attention %s, condition %s), %d parameters", config.model.attention,
             config.model.condition, sum(p.numel() for p in model.parameters()))
    metrics = dict(Trainer(config.trainer).fit(
        model, _loader(train_examples, config.batch_size, shuffle=True),
        _loader(valid_examples, config.batch_size, shuffle=False)))

    model.eval()
    parts = [("valid", valid_part)] + ([("test", test_part)] if test_part else [])
    for prefix, part in parts:
        scores = score_part(model, tokenizer, part, batch_size=config.batch_size, decode=config.decode,
                            max_length=config.max_length)
        metrics.update({f"{prefix}_{k}": v for k, v in scores.items()})
        log.info("%s: BLEU %.2f on %d images", prefix, scores["bleu"], scores["images"])
    if config.images is not None:
        config = dataclasses.replace(config, images=str(resolve(config.images)))
    return save_task_bundle(TASK, config, model, assets={"vocab": tokenizer.to_json()}, metrics=metrics)


@dataclass
class LoadedCaptioner:
    """A loaded caption bundle: the model (eval mode), its tokenizer and the training config."""

    model: Captioner
    tokenizer: Tokenizer
    config: CaptionConfig
    path: Path


def load_captioner(bundle_path: Union[str, Path]) -> LoadedCaptioner:
    bundle = load_task_bundle(bundle_path, TASK)
    if not isinstance(bundle.model, Captioner):
        raise ValueError(f"{bundle.path} is not a caption bundle (it holds a {type(bundle.model).__name__})")
    if "vocab" not in bundle.assets:
        raise ValueError(f"{bundle.path} has no vocab.json: it is not a complete caption bundle")
    return LoadedCaptioner(bundle.model, tokenizer_from_json(bundle.assets["vocab"]),
                           config_from_dict(bundle.task_config), bundle.path)


def _decoding(config: CaptionConfig, options: dict, allowed: type) -> DecodeConfig:
    """The bundle's decode settings overridden by the options that are not None."""
    names = {f.name for f in fields(allowed)}
    unknown = set(options) - names
    if unknown:
        raise TypeError(f"unknown caption option(s) {sorted(unknown)}; known: {sorted(names)}")
    given = {k: v for k, v in options.items() if v is not None and k in {f.name for f in fields(DecodeConfig)}}
    return DecodeConfig(**{f.name: given.get(f.name, getattr(config.decode, f.name)) for f in fields(DecodeConfig)})


def evaluate(bundle_path: Union[str, Path], data: Optional[str] = None, **options) -> dict:
    """BLEU (with its n-gram precisions and brevity penalty) of a bundle's captions, and the number of images.

    ``data=None`` scores the test images of its training run (else its validation images); a path scores that
    captions file (image names relative to ``images``, else the bundle's --images, else the file's folder).
    ``options``: :class:`EvaluateOptions` fields.
    """
    c = load_captioner(bundle_path)
    batch_size = options.pop("batch_size", None)
    folder = options.pop("images", None)
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"--batch_size must be a positive integer, got {batch_size!r}")
    decode = _decoding(c.config, options, EvaluateOptions)
    if data is None:
        if folder is not None:
            raise ValueError("--images goes with --data (the held-out images of the bundle are where it read them)")
        check_data_unchanged(bundle_path, c.config, sys.modules[__name__])
        _, valid, test = load_data(c.config)
        part = test or valid
    else:
        part = _load(_read(data, c.config, folder), str(Path(data).expanduser()), c.config)
    scores = score_part(c.model, c.tokenizer, part, batch_size=batch_size or c.config.batch_size, decode=decode,
                        max_length=c.config.max_length)
    return {**scores, "data": part.name}


def predict(bundle_path: Union[str, Path], inputs: Iterable[str], **options) -> Iterator[dict]:
    """``{"image", "caption"}`` for each image path in ``inputs`` (blank lines skipped; the bundle loaded once).

    ``options``: :class:`PredictOptions` fields; ``attention=PATH`` draws the first image's attention as a PNG.
    """
    c = load_captioner(bundle_path)
    plot = options.pop("attention", None)
    decode = _decoding(c.config, options, PredictOptions)
    if plot is not None and c.model.config.attention == "none":
        raise ValueError("--attention needs a model with attention (trained with --model.attention soft); this "
                         "bundle has --model.attention none")
    first = True
    for line in inputs:
        name = line.strip()
        if not name:
            continue
        image = load_image(Path(name).expanduser(), size=c.config.image_size, colour=c.config.colour)
        ids = caption_ids(c.model, [image], batch_size=1, decode=decode, max_new_tokens=c.config.max_length + 1)[0]
        if plot is not None and first:
            words = [c.tokenizer.decode([i - SPECIALS]).strip() if i >= SPECIALS else "</s>" for i in ids]
            plot_attention(image, attention_maps(c.model, image, ids), words, plot)
        first = False
        yield {"image": name, "caption": decode_target(c.tokenizer, ids)}


@torch.no_grad()
def attention_maps(model: Captioner, image: Tensor, ids: list[int]) -> Tensor:
    """The attention over the feature grid at each generated word: (T, H', W'), each map summing to 1.

    Re-runs the decoder on the caption it produced (eval mode, each step fed the word the decoding chose), which
    repeats the decoding's steps exactly, so these are the weights it used.
    """
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        y = torch.tensor([ids], dtype=torch.long, device=device)
        weights = model({"images": image.unsqueeze(0).to(device), "y": y}).attention[0]  # (T, S)
    finally:
        model.train(was_training)
    return weights.reshape(len(ids), *model.feature_grid(*image.shape[1:])).cpu()


def plot_attention(image: Tensor, maps: Tensor, words: Sequence[str], path: str) -> Path:
    """A grid of panels: the image, then per word the image under its attention map (brighter = looked at)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path).expanduser()
    if not path.parent.exists():
        raise FileNotFoundError(f"--attention: no folder {path.parent} to write {path.name} in")
    C, H, W = image.shape
    pixels = image.permute(1, 2, 0).numpy()
    pixels = pixels[:, :, 0] if C == 1 else pixels
    up = torch.nn.functional.interpolate(maps.unsqueeze(1).float(), size=(H, W), mode="bilinear",
                                         align_corners=False)[:, 0]  # (T, H, W)
    panels = len(words) + 1
    cols = min(6, panels)
    rows = -(-panels // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.8 * cols, 1.9 * rows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= panels:
            continue
        ax.imshow(pixels, cmap="gray" if C == 1 else None, vmin=0, vmax=255)
        if k == 0:
            ax.set_title("image", fontsize=9)
            continue
        m = up[k - 1]
        ax.imshow(m.numpy(), cmap="magma", alpha=0.6, vmin=0.0, vmax=float(m.max()) or 1.0)
        ax.set_title(words[k - 1], fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
