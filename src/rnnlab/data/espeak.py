"""The embedded speech data: spoken digits (and digit sequences) synthesised with ``espeak-ng``.

Each clip is one call of ``espeak-ng -v <accent>+<variant> -s <words per minute> -p <pitch> -w out.wav TEXT``
with a seeded random speed (120-220) and pitch (20-80), plus white noise of a seeded random level
(0.002-0.03 of full scale) added here, written as 16-bit PCM at espeak-ng's own 22,050 Hz (the task resamples).
A voice is an accent with a variant (``en-us+f3``): the test voices of :func:`digits_folder` are voices
never heard in training.

The clips are cached under ``$RNNLAB_SPEECH_CACHE`` (default ``~/.cache/rnnlab/speech-embedded``) in a folder
named after a hash of the recipe (``recipe.json`` in it records espeak-ng's version too), written whole and
then renamed into place, so a second run reads them instead of synthesising them again (espeak-ng is needed
only for the first).
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import random
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .audio import read_wav, write_wav

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ACCENTS = ("en-us", "en", "en-gb-scotland", "en-029", "en-gb-x-rp")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m7", "f1", "f2", "f3", "f4", "f5", "croak", "whisper")
INSTALL = ("the embedded speech data is synthesised with espeak-ng, which is not installed: install it "
           "(Debian/Ubuntu: sudo apt-get install espeak-ng; macOS: brew install espeak-ng) or give --data "
           "FOLDER (one sub-folder of WAV files per label) or --data FILE.csv (file,transcript)")


@dataclass(frozen=True)
class Recipe:
    """What the embedded data is made of; its hash names the cache folder."""

    kind: str
    """digits: one digit word per clip, in label folders; numbers: 2-4 digit words per clip, with a transcript."""
    voices: tuple[str, ...]
    takes: int
    """digits: clips per voice and digit; numbers: clips per voice."""
    test_voices: int
    """The last this many voices (after a seeded shuffle) are the test voices."""
    seed: int = 0


def default_voices() -> tuple[str, ...]:
    """Every accent with every variant, in a seeded shuffled order (the last ones are the test voices)."""
    voices = [f"{a}+{v}" for a in ACCENTS for v in VARIANTS]
    random.Random(0).shuffle(voices)
    return tuple(voices)


DIGITS_RECIPE = Recipe("digits", default_voices(), takes=2, test_voices=10)
NUMBERS_RECIPE = Recipe("numbers", default_voices(), takes=12, test_voices=10)


def espeak() -> str:
    """The espeak-ng executable, or a FileNotFoundError that says how to install it."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise FileNotFoundError(INSTALL)
    return exe


def _version(exe: str) -> str:
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False).stdout
    return " ".join(out.split()[:4])


def cache_root() -> Path:
    return Path(os.environ.get("RNNLAB_SPEECH_CACHE", "~/.cache/rnnlab/speech-embedded")).expanduser()


def _synthesise(exe: str, voice: str, text: str, out: Path, rng: random.Random) -> None:
    speed, pitch, noise = rng.randint(120, 220), rng.randint(20, 80), rng.uniform(0.002, 0.03)
    noise_seed = rng.randrange(2**31)
    raw = out.with_suffix(".raw.wav")
    subprocess.run([exe, "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(raw), text], check=True,
                   capture_output=True)
    x, rate = read_wav(raw)
    x = x + noise * np.random.default_rng(noise_seed).standard_normal(len(x)).astype(np.float32)
    write_wav(out, x, rate)
    raw.unlink()


def _jobs(recipe: Recipe, root: Path) -> list[tuple[str, str, Path, dict]]:
    """(voice, text, output path, row) per clip, in a fixed order; the row is the clip's CSV row (numbers)."""
    rng = random.Random(recipe.seed)
    test = set(recipe.voices[len(recipe.voices) - recipe.test_voices :])
    jobs = []
    for voice in recipe.voices:
        part = "test" if voice in test else "train"
        name = voice.replace("+", "_")
        if recipe.kind == "digits":
            for digit, word in enumerate(DIGITS):
                for take in range(recipe.takes):
                    jobs.append((voice, word, root / part / str(digit) / f"{name}_{take}.wav", {}))
        else:
            for take in range(recipe.takes):
                words = " ".join(rng.choice(DIGITS) for _ in range(rng.randint(2, 4)))
                rel = f"{part}/wav/{name}_{take}.wav"
                jobs.append((voice, words, root / rel, {"file": rel, "transcript": words,
                                                        "speaker": name, "part": part}))
    return jobs


def build(recipe: Recipe, root: Path | None = None) -> Path:
    """The folder of ``recipe``'s clips, synthesised on the first call and read from the cache after.

    digits: ``<folder>/{train,test}/<digit>/<voice>_<take>.wav``; numbers: ``<folder>/{train,test}.csv``
    (file,transcript,speaker) beside ``<folder>/{train,test}/wav/``.
    """
    key = hashlib.sha256(json.dumps(asdict(recipe)).encode()).hexdigest()[:12]
    folder = (root or cache_root()) / f"{recipe.kind}-{key}"
    if (folder / "recipe.json").is_file():
        return folder
    exe = espeak()
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{recipe.kind}-", dir=folder.parent))
    try:
        jobs = _jobs(recipe, tmp)
        for _, _, out, _ in jobs:
            out.parent.mkdir(parents=True, exist_ok=True)
        seeds = random.Random(recipe.seed + 1)
        rngs = [random.Random(seeds.randrange(2**31)) for _ in jobs]
        with ThreadPoolExecutor(max_workers=2) as pool:  # espeak-ng runs in its own process
            list(pool.map(lambda j: _synthesise(exe, j[0][0], j[0][1], j[0][2], j[1]), zip(jobs, rngs)))
        if recipe.kind == "numbers":
            for part in ("train", "test"):
                with open(tmp / f"{part}.csv", "w", newline="", encoding="utf-8") as f:
                    writer = csv.DictWriter(f, fieldnames=["file", "transcript", "speaker"])
                    writer.writeheader()
                    writer.writerows({k: r[k] for k in ("file", "transcript", "speaker")}
                                     for *_, r in jobs if r["part"] == part)
        (tmp / "recipe.json").write_text(json.dumps({"recipe": asdict(recipe), "espeak": _version(exe)}, indent=1))
        try:
            tmp.rename(folder)
        except OSError:  # another process finished first: use its copy
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def describe(recipe: Recipe) -> str:
    """The recipe as text (what the bundle fingerprints for the embedded data)."""
    return json.dumps(asdict(recipe), sort_keys=True)
