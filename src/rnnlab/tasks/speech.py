"""Speech: spoken-word recognition (a BiGRU/BiLSTM classifier over log-mels) and transcription (a CTC head).

``train(config)`` reads WAV files (:mod:`rnnlab.data.audio`: PCM 8/16/24/32-bit, channels averaged, resampled
to ``features.sample_rate`` by a polyphase windowed-sinc filter unless ``features.resample`` is off), turns
each into normalised log-mel features (:class:`rnnlab.nn.features.LogMel`, HTK mel scale by default), and trains

- ``mode=classify`` (a folder of label sub-folders, the flat Free Spoken Digit layout, or the embedded
  espeak-ng digits): a :class:`~rnnlab.structures.ManyToOne` over the frames; accuracy, macro-F1, confusion PNG;
- ``mode=transcribe`` (a CSV of ``file,transcript``, or the embedded espeak-ng digit sequences): a
  :class:`~rnnlab.structures.ManyToMany` whose per-frame scores over blank + the alphabet train with CTC
  (:mod:`rnnlab.structures.ctc`), decoded greedily or by prefix beam search; CER and WER by ``jiwer``.

SpecAugment's frequency and time masks (Park et al., 2019) are applied to training batches only.
Held-out data is split by speaker (:func:`rnnlab.data.speech_data.split_by_speaker`, the rule in
:mod:`rnnlab.data.speech_data`), so validation and test voices are never heard in training; Speech Commands'
own split lists are used when the folder has them.
"""
from __future__ import annotations

import logging
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

from rnnlab.data import espeak
from rnnlab.data.audio import read_wav, to_rate
from rnnlab.data.batching import make_loader, pad_collate
from rnnlab.data.errors import DataError
from rnnlab.data.speech_data import Clip, read_label_folder, read_transcripts, split_by_speaker, split_lists
from rnnlab.nn.features import LogMel, MelNorm, MelScale, spec_augment
from rnnlab.structures import EncoderConfig, ManyToMany, ManyToManyConfig, ManyToOne, ManyToOneConfig
from rnnlab.structures.base import check_choice
from rnnlab.structures.ctc import beam_decode, ctc_loss, greedy_decode, min_frames
from rnnlab.structures.many_to_one import Pooling
from rnnlab.training import Trainer, TrainerConfig
from rnnlab.training.checkpoint import from_dict
from rnnlab.training.classification_metrics import classification_metrics, confusion_matrix, plot_confusion

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

TASK = "speech"
DESCRIPTION = ("spoken-word recognition (BiGRU/BiLSTM over log-mels) from label folders of WAV files, or "
               "transcription with CTC from a file,transcript CSV")
EMBEDDED_DATA = ("spoken digits synthesised with espeak-ng: 65 voices (5 accents x 13 variants), 1,300 clips, "
                 "10 test voices never heard in training (needs espeak-ng installed)")
DIGITS, NUMBERS = "espeak-digits", "espeak-numbers"
EMBEDDED_NAMES = (DIGITS, NUMBERS)
"""--data values, besides None, that name the embedded data: the digits (classify) or digit sequences
(transcribe, letters as targets)."""

Mode = Literal["auto", "classify", "transcribe"]
Decoder = Literal["greedy", "beam"]


@dataclass(frozen=True)
class FeatureConfig:
    """How a WAV file becomes a sequence of feature vectors (stored in the bundle: prediction does the same)."""

    sample_rate: int = 16000
    """The rate (Hz) the features are computed at."""
    resample: bool = True
    """Resample a file at another rate (polyphase windowed sinc, scipy's resample_poly); false = such a file is an
    error naming its rate."""
    n_fft: int = 400
    """STFT window and FFT length in samples (400 = 25 ms at 16 kHz), a periodic Hann window."""
    hop_length: int = 160
    """Samples between frames (160 = 10 ms at 16 kHz)."""
    n_mels: int = 40
    """Mel filters (M)."""
    f_min: float = 20.0
    """The lowest filter's lower corner, Hz."""
    f_max: Optional[float] = None
    """The highest filter's upper corner, Hz (None = sample_rate / 2)."""
    mel_scale: MelScale = "htk"
    """htk (2595·log10(1 + f/700)) | slaney (linear below 1 kHz, log above: librosa's default)."""
    mel_norm: MelNorm = "none"
    """none (triangles peak at 1) | slaney (each triangle has unit area)."""
    normalize: Literal["utterance", "none"] = "utterance"
    """utterance: each mel channel to zero mean and unit variance over the clip's frames; none: raw log-mels."""
    stack: int = 2
    """Stack this many consecutive frames into one step (and take every stack-th): T/stack steps of M·stack
    features, which makes the recurrent network that much faster (Sak et al., 2015)."""

    def __post_init__(self) -> None:
        for name in ("sample_rate", "n_fft", "hop_length", "n_mels", "stack"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"--features.{name} must be a positive integer, got {value!r}")
        check_choice("--features.mel_scale", self.mel_scale, MelScale)
        check_choice("--features.mel_norm", self.mel_norm, MelNorm)
        f_max = self.sample_rate / 2 if self.f_max is None else self.f_max
        if not 0 <= self.f_min < f_max <= self.sample_rate / 2:
            raise ValueError(f"--features.f_min and --features.f_max must satisfy 0 <= f_min < f_max <= sample_rate/2"
                             f" = {self.sample_rate / 2:g} Hz, got {self.f_min:g} and {f_max:g}")

    @property
    def size(self) -> int:
        """Features per step: n_mels · stack."""
        return self.n_mels * self.stack


@dataclass(frozen=True)
class AugmentConfig:
    """SpecAugment (Park et al., 2019, §2) on training batches: masks of whole mel channels and of whole frames,
    counted in model steps (after stacking). 0 masks = off."""

    freq_masks: int = 2
    """Frequency masks per clip."""
    freq_width: int = 6
    """F: each frequency mask covers 0..F mel channels (uniform)."""
    time_masks: int = 2
    """Time masks per clip."""
    time_width: int = 6
    """T: each time mask covers 0..T steps (uniform), and at most max_time_fraction of the clip."""
    max_time_fraction: float = 0.2
    """p: a time mask covers at most this fraction of the clip's steps."""

    def __post_init__(self) -> None:
        for name in ("freq_masks", "freq_width", "time_masks", "time_width"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"--augment.{name} must be a non-negative integer, got {value!r}")
        if not 0.0 <= self.max_time_fraction <= 1.0:
            raise ValueError(f"--augment.max_time_fraction must be in [0, 1], got {self.max_time_fraction!r}")


@dataclass(frozen=True)
class SpeechModelConfig:
    """The network: a recurrent encoder over the frames; classify pools its outputs into one vector, transcribe
    scores every step over blank + the alphabet."""

    encoder: EncoderConfig = field(
        default_factory=lambda: EncoderConfig(kind="gru", hidden_size=64, num_layers=2, bidirectional=True,
                                              dropout=0.1)
    )
    """The sequence encoder: gru | lstm (bidirectional: BiGRU / BiLSTM) | rnn | mingru | minlstm | cnn | transformer."""
    pooling: Pooling = "mean"
    """classify: how the encoder's outputs become one vector: last | mean | max | attention."""
    dropout: float = 0.2
    """Dropout before the output layer."""

    def __post_init__(self) -> None:
        check_choice("--model.pooling", self.pooling, Pooling)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"--model.dropout must be in [0, 1), got {self.dropout!r}")


def _default_trainer() -> TrainerConfig:
    # The embedded default: 15 epochs (about 30 s on an idle machine), cut at 60 s on a busy one; synthesising the
    # clips (once) and featurising them take about 30 s more.
    return TrainerConfig(optimizer="adamw", lr=3e-3, weight_decay=0.01, max_epochs=15, max_time=60.0,
                         clip_norm=1.0, early_stopping_patience=6, log_every=20, run_dir="runs/speech")


@dataclass(frozen=True)
class SpeechConfig:
    """Train a spoken-word classifier or a CTC transcriber on WAV files and score it on unseen voices."""

    data: Optional[str] = None
    """A folder of WAV files, one sub-folder per label (or the flat FSDD layout <digit>_<speaker>_<n>.wav), or a
    .csv of file,transcript; None or 'espeak-digits' = the embedded spoken digits, 'espeak-numbers' = the
    embedded digit sequences with their letter transcripts (both synthesised by espeak-ng)."""
    valid_data: Optional[str] = None
    """Validation data in the same format; None = Speech Commands' validation_list.txt when the folder has one,
    else whole speakers holding valid_fraction of the training clips."""
    test_data: Optional[str] = None
    """Test data, scored once at the end; None = Speech Commands' testing_list.txt when present (the embedded
    sets have their own test voices)."""
    mode: Mode = "auto"
    """classify | transcribe | auto (transcribe for a .csv or 'espeak-numbers', else classify)."""
    split: Literal["speaker", "file"] = "speaker"
    """How validation clips are held out: speaker (whole speakers, by the file-name rule or a speaker column) or
    file (a seeded random fraction of the clips, the same speakers on both sides)."""
    valid_fraction: float = 0.15
    """The share of training clips held out for validation when valid_data is not given."""
    file_column: str = "file"
    """transcribe: the CSV column holding the WAV path (relative to the CSV's folder)."""
    transcript_column: str = "transcript"
    """transcribe: the CSV column holding the transcript."""
    speaker_column: str = "speaker"
    """transcribe: the CSV column naming the speaker, when present (else the file-name rule)."""
    lowercase: bool = True
    """transcribe: lower-case the transcripts (the alphabet is the characters of the training transcripts)."""
    features: FeatureConfig = field(default_factory=FeatureConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    batch_size: int = 32
    """B: clips per batch (batched by similar length)."""
    beam_size: int = 8
    """transcribe: the prefix beam search's width for the validation and test metrics (1 = greedy)."""
    model: SpeechModelConfig = field(default_factory=SpeechModelConfig)
    trainer: TrainerConfig = field(default_factory=_default_trainer)

    def __post_init__(self) -> None:
        check_choice("--mode", self.mode, Mode)
        check_choice("--split", self.split, Literal["speaker", "file"])
        if not 0.0 <= self.valid_fraction < 1.0:
            raise ValueError(f"--valid_fraction must be in [0, 1), got {self.valid_fraction!r}")
        check_positive(self, "batch_size", "beam_size")
        check_run_dir(self)


Config = SpeechConfig


def config_from_dict(data: dict) -> SpeechConfig:
    """Rebuild a :class:`SpeechConfig` from ``asdict(config)`` (as stored in a bundle's config.json)."""
    return from_dict(SpeechConfig, data)


@dataclass(frozen=True)
class EvaluateOptions:
    """How ``rnnlab evaluate`` scores a speech bundle on --data (a label folder or a transcript CSV)."""

    plot: Optional[str] = None
    """classify: write the confusion matrix as a PNG to this path."""
    decoder: Decoder = "beam"
    """transcribe: greedy (best path) | beam (prefix beam search)."""
    beam_size: int = 8
    """transcribe: the beam width."""
    batch_size: int = 32
    """Clips per batch while scoring."""


@dataclass(frozen=True)
class PredictOptions:
    """How ``rnnlab predict BUNDLE file.wav ...`` runs a speech bundle."""

    top_k: int = 3
    """classify: how many of the most probable labels to list with their probabilities."""
    decoder: Decoder = "beam"
    """transcribe: greedy | beam."""
    beam_size: int = 8
    """transcribe: the beam width."""


# --- data ------------------------------------------------------------------------------------------------------

def resolve_mode(config: SpeechConfig) -> str:
    """classify or transcribe, as ``config.mode`` says or as its data implies."""
    if config.mode != "auto":
        return config.mode
    data = config.data or DIGITS
    return "transcribe" if data == NUMBERS or str(data).lower().endswith(".csv") else "classify"


def _read(path: str, mode: str, config: SpeechConfig) -> list[Clip]:
    if mode == "transcribe":
        if Path(path).expanduser().is_dir():
            raise DataError(path, "transcribe reads a .csv of file,transcript, got a folder (a folder of label "
                                  "sub-folders is for --mode classify)")
        return read_transcripts(path, file_column=config.file_column, transcript_column=config.transcript_column,
                                speaker_column=config.speaker_column)
    if Path(path).expanduser().is_file():
        raise DataError(path, "classify reads a folder of WAV files, one sub-folder per label (for a .csv of "
                              "file,transcript use --mode transcribe)")
    return read_label_folder(path)


def _embedded(name: str, mode: str) -> tuple[list[Clip], list[Clip]]:
    """(train, test) clips of an embedded set, synthesised on first use."""
    if (name == DIGITS) != (mode == "classify"):
        want = DIGITS if mode == "classify" else NUMBERS
        raise ValueError(f"--data {name} does not fit --mode {mode}: use --data {want} (or --mode auto)")
    if name == DIGITS:
        folder = espeak.build(espeak.DIGITS_RECIPE)
        return read_label_folder(str(folder / "train")), read_label_folder(str(folder / "test"))
    folder = espeak.build(espeak.NUMBERS_RECIPE)
    return read_transcripts(str(folder / "train.csv")), read_transcripts(str(folder / "test.csv"))


def _hold_out(clips: list[Clip], config: SpeechConfig) -> tuple[list[Clip], list[Clip]]:
    if config.split == "speaker":
        if len({c.speaker for c in clips}) > 1:
            return split_by_speaker(clips, config.valid_fraction, config.trainer.seed)
        log.warning("every training clip has the same speaker by the file-name rule: holding out random clips")
    return split_off(clips, config.valid_fraction, config.trainer.seed)


def load_splits(config: SpeechConfig) -> tuple[list[Clip], list[Clip], list[Clip]]:
    """(train, valid, test) clips as ``config`` names them."""
    mode = resolve_mode(config)
    test: list[Clip] = []
    listed = None
    if config.data is None or config.data in EMBEDDED_NAMES:
        train, test = _embedded(config.data or (DIGITS if mode == "classify" else NUMBERS), mode)
    else:
        train = _read(config.data, mode, config)
        if mode == "classify":
            listed = split_lists(config.data, train)
            if listed is not None:
                train, test = listed["train"], listed["test"]
                log.info("%s: split by its validation_list.txt/testing_list.txt", config.data)
    if config.valid_data:
        valid = _read(config.valid_data, mode, config)
    elif listed is not None and listed["valid"]:
        valid = listed["valid"]
    else:
        train, valid = _hold_out(train, config)
    if config.test_data:
        test = _read(config.test_data, mode, config)
    return train, valid, test


def embedded_text(config: SpeechConfig) -> str:
    """The recipe of the embedded set (what the bundle fingerprints)."""
    name = config.data or (DIGITS if resolve_mode(config) == "classify" else NUMBERS)
    return espeak.describe(espeak.DIGITS_RECIPE if name == DIGITS else espeak.NUMBERS_RECIPE)


# --- features ----------------------------------------------------------------------------------------------------

class Featurizer:
    """WAV path -> features (T', n_mels·stack) float32, as the run's :class:`FeatureConfig` says."""

    def __init__(self, config: FeatureConfig) -> None:
        self.config = config
        self.logmel = LogMel(config.sample_rate, n_fft=config.n_fft, hop_length=config.hop_length,
                             n_mels=config.n_mels, f_min=config.f_min, f_max=config.f_max, scale=config.mel_scale,
                             norm=config.mel_norm, normalize=config.normalize == "utterance")

        self.resampled: Counter = Counter()  # original rate -> files resampled from it

    @torch.no_grad()
    def __call__(self, path: str) -> Tensor:
        x, rate = read_wav(path)
        x = to_rate(x, rate, self.config.sample_rate, path=path, resample_audio=self.config.resample)
        if rate != self.config.sample_rate:
            self.resampled[rate] += 1
        feats = self.logmel(torch.from_numpy(x))  # (T, M)
        s = self.config.stack
        T = max(1, feats.shape[0] // s)
        feats = F.pad(feats, (0, 0, 0, max(0, T * s - feats.shape[0])))[: T * s]
        return feats.reshape(T, s * feats.shape[1]).contiguous()  # (T / s, M·s)


class Alphabet:
    """Transcript characters <-> class ids 1..|alphabet| (0 is CTC's blank)."""

    def __init__(self, chars: Sequence[str], lowercase: bool) -> None:
        self.chars, self.lowercase = list(chars), lowercase
        self.ids = {c: i + 1 for i, c in enumerate(self.chars)}

    @classmethod
    def fit(cls, transcripts: Iterable[str], lowercase: bool) -> Alphabet:
        return cls(sorted({c for t in transcripts for c in cls.normalise(t, lowercase)}), lowercase)

    @staticmethod
    def normalise(text: str, lowercase: bool) -> str:
        text = " ".join(text.split())
        return text.lower() if lowercase else text

    def encode(self, text: str) -> list[int]:
        """Ids of the characters the alphabet knows (others dropped)."""
        return [self.ids[c] for c in self.normalise(text, self.lowercase) if c in self.ids]

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.chars[i - 1] for i in ids if 0 < i <= len(self.chars))


def featurize(featurizer: Featurizer, clips: Sequence[Clip], what: str = "") -> list[Tensor]:
    """Features of each clip (a DataError names the file and its problem); logs what was resampled."""
    featurizer.resampled.clear()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one clip's STFT is too small to split: threads only wait on each other
    try:
        feats = [featurizer(c.path) for c in clips]
    finally:
        torch.set_num_threads(threads)
    if featurizer.resampled:
        rates = ", ".join(f"{n} from {rate} Hz" for rate, n in sorted(featurizer.resampled.items()))
        log.info("%sresampled to %d Hz: %s", f"{what}: " if what else "", featurizer.config.sample_rate, rates)
    return feats


# --- the training objective --------------------------------------------------------------------------------------

class SpeechObjective(nn.Module):
    """The model's loss with SpecAugment on training batches: cross-entropy (classify) or CTC (transcribe).
    Trained in place of the model, so that the bundle holds the plain structure."""

    def __init__(self, model: nn.Module, mode: str, augment: AugmentConfig) -> None:
        super().__init__()
        self.model, self.mode, self.augment = model, mode, augment

    def forward(self, batch: dict) -> Tensor:
        return self.model(batch).logits

    def loss(self, batch: dict) -> Tensor:
        a = self.augment
        if self.training and (a.freq_masks or a.time_masks):
            batch = {**batch, "x": spec_augment(batch["x"], batch.get("lengths"), freq_masks=a.freq_masks,
                                                freq_width=a.freq_width, time_masks=a.time_masks,
                                                time_width=a.time_width, max_time_fraction=a.max_time_fraction)}
        logits = self(batch)
        if self.mode == "classify":
            return F.cross_entropy(logits, batch["y"])  # logits (B, C)
        return ctc_loss(logits, batch["lengths"], batch["y"], batch["y_lengths"])  # logits (B, T, 1 + A)


def _examples(feats: Sequence[Tensor], targets: Sequence) -> list[dict]:
    return [{"x": x, "y": y} for x, y in zip(feats, targets)]


def _loader(examples: list[dict], batch_size: int, mode: str, *, shuffle: bool):
    lengths = {"x": "lengths", "y": "y_lengths"} if mode == "transcribe" else {"x": "lengths"}
    return make_loader(examples, batch_size, shuffle=shuffle, lengths=lengths)


# --- scoring -----------------------------------------------------------------------------------------------------

@torch.no_grad()
def _logits(model: nn.Module, feats: Sequence[Tensor], batch_size: int) -> list[Tensor]:
    """Per clip: (C,) class logits (ManyToOne) or (T, C) frame logits (ManyToMany), in input order."""
    model.eval()
    out: list[Optional[Tensor]] = [None] * len(feats)
    order = sorted(range(len(feats)), key=lambda i: feats[i].shape[0])
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        batch = pad_collate([{"x": feats[i]} for i in chunk])
        logits = model(batch).logits
        for row, i in enumerate(chunk):
            out[i] = logits[row] if logits.dim() == 2 else logits[row, : int(batch["lengths"][row])]
    return out  # type: ignore[return-value]


def score_classifier(model: nn.Module, feats: Sequence[Tensor], y: Sequence[int], labels: list[str],
                     batch_size: int = 32) -> dict:
    probs = torch.stack(_logits(model, feats, batch_size)).softmax(-1).numpy()  # (N, C)
    y_arr = np.asarray(y, dtype=np.int64)
    metrics = classification_metrics(confusion_matrix(y_arr, probs.argmax(-1), len(labels)), labels)
    metrics["loss"] = float(-np.log(np.clip(probs[np.arange(len(y_arr)), y_arr], 1e-12, None)).mean())
    return metrics


def transcribe_logits(logits: Sequence[Tensor], alphabet: Alphabet, decoder: str, beam_size: int) -> list[str]:
    out = []
    for frames in logits:
        if decoder == "greedy" or beam_size == 1:
            ids = greedy_decode(frames[None])[0]
        else:
            ids = beam_decode(frames[None], beam_size=beam_size)[0]
        out.append(alphabet.decode(ids))
    return out


def score_transcriber(model: nn.Module, feats: Sequence[Tensor], references: Sequence[str], alphabet: Alphabet,
                      *, decoder: str = "beam", beam_size: int = 8, batch_size: int = 32) -> dict:
    """CER and WER (jiwer, over the whole set), exact-match accuracy, and a few examples."""
    import jiwer

    hyps = transcribe_logits(_logits(model, feats, batch_size), alphabet, decoder, beam_size)
    refs = [Alphabet.normalise(r, alphabet.lowercase) for r in references]
    return {"cer": float(jiwer.cer(refs, hyps)), "wer": float(jiwer.wer(refs, hyps)),
            "exact": float(np.mean([h == r for h, r in zip(hyps, refs)])), "examples": len(refs),
            "decoder": decoder if beam_size > 1 else "greedy",
            "samples": [{"reference": r, "hypothesis": h} for r, h in list(zip(refs, hyps))[:5]]}


def _plot(metrics: dict, path: Path, title: str) -> None:
    try:
        plot_confusion(np.array(metrics["confusion"]), metrics["labels"], path, title=title)
    except ImportError:  # matplotlib is an optional install
        log.warning("matplotlib is not installed: no %s", path)


# --- train, evaluate, predict ------------------------------------------------------------------------------------

def _label_ids(clips: Sequence[Clip], labels: list[str]) -> list[int]:
    ids = {label: i for i, label in enumerate(labels)}
    for c in clips:
        if c.target not in ids:
            raise DataError(c.path, f"label {c.target!r} was never seen in training (known labels: "
                                    f"{', '.join(labels)})")
    return [ids[c.target] for c in clips]


@locked
def train(config: SpeechConfig) -> Path:
    """Train as ``config`` says; returns the bundle's path (``<run_dir>/bundle``)."""
    mode = resolve_mode(config)
    train_clips, valid_clips, test_clips = load_splits(config)
    speakers = lambda clips: len({c.speaker for c in clips})  # noqa: E731
    log.info("data (%s): %d training clips (%d speakers), %d validation (%d), %d test (%d)", mode, len(train_clips),
             speakers(train_clips), len(valid_clips), speakers(valid_clips), len(test_clips), speakers(test_clips))
    featurizer = Featurizer(config.features)
    feats = {name: featurize(featurizer, clips, name) for name, clips in
             (("train", train_clips), ("valid", valid_clips), ("test", test_clips))}
    torch.manual_seed(config.trainer.seed)
    m = config.model
    if mode == "classify":
        labels = sorted({c.target for c in train_clips})
        if len(labels) < 2:
            raise DataError(train_clips[0].source, f"classification needs at least 2 labels, the data has {labels}")
        targets = {name: _label_ids(clips, labels) for name, clips in
                   (("train", train_clips), ("valid", valid_clips), ("test", test_clips))}
        model: nn.Module = ManyToOne(ManyToOneConfig(output_size=len(labels), input_size=config.features.size,
                                                     encoder=m.encoder, pooling=m.pooling, dropout=m.dropout))
        assets: dict = {"labels": labels}
        counts = sorted(Counter(c.target for c in train_clips).items())
        log.info("labels: %s", ", ".join(f"{label} ({n})" for label, n in counts))
    else:
        alphabet = Alphabet.fit((c.target for c in train_clips), config.lowercase)
        # a held-out transcript whose characters are all unknown to the alphabet keeps one id for the loss
        # (its CER/WER are scored on the text itself)
        targets = {name: [alphabet.encode(c.target) or [1] for c in clips] for name, clips in
                   (("train", train_clips), ("valid", valid_clips), ("test", test_clips))}
        short = [c.path for c, x, y in zip(train_clips, feats["train"], targets["train"]) if min_frames(y) > len(x)]
        if short:
            log.warning("%d of %d training clips have fewer steps than their transcript needs (e.g. %s): CTC cannot "
                        "align them and they add no loss; lower --features.stack or --features.hop_length",
                        len(short), len(train_clips), short[0])
        model = ManyToMany(ManyToManyConfig(output_size=1 + len(alphabet.chars), input_size=config.features.size,
                                            encoder=m.encoder, dropout=m.dropout))
        assets = {"alphabet": alphabet.chars}
        log.info("alphabet (%d): %r", len(alphabet.chars), "".join(alphabet.chars))
    log.info("model: %s encoder, %d features per step, %d parameters", m.encoder.kind, config.features.size,
             sum(p.numel() for p in model.parameters()))

    train_loader = _loader(_examples(feats["train"], targets["train"]), config.batch_size, mode, shuffle=True)
    valid_loader = (_loader(_examples(feats["valid"], targets["valid"]), config.batch_size, mode, shuffle=False)
                    if valid_clips else None)
    metrics = dict(Trainer(config.trainer).fit(SpeechObjective(model, mode, config.augment), train_loader,
                                               valid_loader))
    model.eval()
    run_dir = Path(config.trainer.run_dir)
    for name, png in (("valid", "confusion.png"), ("test", "confusion_test.png")):
        if not feats[name]:
            continue
        if mode == "classify":
            result = score_classifier(model, feats[name], targets[name], labels)
            metrics.update({f"{name}_accuracy": result["accuracy"], f"{name}_macro_f1": result["macro_f1"],
                            name: result})
            _plot(result, run_dir / png, f"{name} (voices unseen in training): accuracy {result['accuracy']:.3f}")
            log.info("%s: accuracy %.4f, macro-F1 %.4f (%d clips)", name, result["accuracy"], result["macro_f1"],
                     result["examples"])
        else:
            clips = valid_clips if name == "valid" else test_clips
            result = score_transcriber(model, feats[name], [c.target for c in clips], alphabet,
                                       beam_size=config.beam_size)
            metrics.update({f"{name}_cer": result["cer"], f"{name}_wer": result["wer"], name: result})
            log.info("%s: CER %.4f, WER %.4f (%d clips)", name, result["cer"], result["wer"], result["examples"])
    return save_task_bundle(TASK, config, model, assets=assets, metrics=metrics)


def load_speech(bundle_path: Union[str, Path]):
    """(model in eval mode, featurizer, labels or Alphabet, mode, config) of a speech bundle."""
    bundle = load_task_bundle(bundle_path, TASK)
    config = config_from_dict(bundle.task_config)
    labels, chars = bundle.assets.get("labels"), bundle.assets.get("alphabet")
    if isinstance(labels, list) and isinstance(bundle.model, ManyToOne):
        return bundle.model.eval(), Featurizer(config.features), labels, "classify", config
    if isinstance(chars, list) and isinstance(bundle.model, ManyToMany):
        return bundle.model.eval(), Featurizer(config.features), Alphabet(chars, config.lowercase), "transcribe", config
    raise ValueError(f"{bundle.path} is not a speech bundle (it lacks labels.json with a ManyToOne model or "
                     "alphabet.json with a ManyToMany model)")


def _check_decoding(decoder: str, beam_size: int, batch_size: int = 1) -> None:
    check_choice("--decoder", decoder, Decoder)
    for name, value in (("beam_size", beam_size), ("batch_size", batch_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"--{name} must be a positive integer, got {value!r}")


def evaluate(bundle_path: Union[str, Path], data: Optional[str] = None, *, plot: Optional[str] = None,
             decoder: str = "beam", beam_size: int = 8, batch_size: int = 32) -> dict:
    """Metrics of a bundle on ``data`` (a label folder, a transcript CSV, or an embedded set's name: its test
    voices), or on the validation clips of its training run when ``data`` is None."""
    model, featurizer, vocab, mode, config = load_speech(bundle_path)
    _check_decoding(decoder, beam_size, batch_size)
    if data is None:
        check_data_unchanged(bundle_path, config, sys.modules[__name__])
        clips = load_splits(config)[1]
        if not clips:
            raise ValueError(f"{bundle_path} was trained without validation data: give --data FOLDER or CSV")
    elif data in EMBEDDED_NAMES:
        clips = _embedded(data, mode)[1]
    else:
        clips = _read(data, mode, config)
    feats = featurize(featurizer, clips)
    if mode == "classify":
        metrics = score_classifier(model, feats, _label_ids(clips, vocab), vocab, batch_size)
        if plot:
            _plot(metrics, Path(plot).expanduser(), f"accuracy {metrics['accuracy']:.3f}")
        return metrics
    return score_transcriber(model, feats, [c.target for c in clips], vocab, decoder=decoder, beam_size=beam_size,
                             batch_size=batch_size)


def predict(bundle_path: Union[str, Path], inputs: Iterable[str], *, top_k: int = 3, decoder: str = "beam",
            beam_size: int = 8) -> Iterator[dict]:
    """Per WAV path: ``{"file", "label", "top": [{"label", "probability"}, ...]}`` (classify) or ``{"file",
    "transcript"}`` (transcribe)."""
    model, featurizer, vocab, mode, _ = load_speech(bundle_path)
    _check_decoding(decoder, beam_size)
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise ValueError(f"--top_k must be a positive integer, got {top_k!r}")
    for path in inputs:
        if not isinstance(path, str):
            raise TypeError(f"predict takes WAV file paths (strings), got {type(path).__name__}")
        if not path.strip():
            continue
        logits = _logits(model, [featurizer(path.strip())], 1)[0]
        if mode == "classify":
            p = logits.softmax(-1)
            top = p.topk(min(top_k, len(vocab)))
            yield {"file": path, "label": vocab[int(top.indices[0])],
                   "top": [{"label": vocab[int(i)], "probability": round(float(q), 6)}
                           for q, i in zip(top.values, top.indices)]}
        else:
            yield {"file": path, "transcript": transcribe_logits([logits], vocab, decoder, beam_size)[0]}


__all__ = ["SpeechConfig", "FeatureConfig", "AugmentConfig", "SpeechModelConfig", "EvaluateOptions",
           "PredictOptions", "Featurizer", "Alphabet", "train", "evaluate", "predict", "load_speech"]
