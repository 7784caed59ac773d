"""Speech data sets on disk: label folders of WAV files, the flat Free Spoken Digit layout, Speech Commands'
split lists, and a CSV of ``file,transcript`` for transcription; splits that keep each speaker on one side.

Layouts read by :func:`read_label_folder`:

- one sub-folder per label holding ``*.wav`` (Speech Commands, our prepared digits): ``FOLDER/<label>/x.wav``;
  sub-folders whose name starts with ``_`` (Speech Commands' ``_background_noise_``) are skipped;
- the Free Spoken Digit Dataset's flat folder: ``FOLDER/<digit>_<speaker>_<index>.wav``.

Speakers (the rule that :func:`split_by_speaker` relies on): in the flat FSDD layout, the middle field; in label
folders, the file name without its last ``_``-separated field (Speech Commands' ``<speaker>_nohash_<n>.wav``
gives ``<speaker>_nohash``, the prepared digits' ``<voice>_<take>.wav`` gives ``<voice>``); a name without
``_`` is its own speaker. In a CSV, a ``speaker`` column when there is one, else the same rule on the file name.

Speech Commands: when ``validation_list.txt`` / ``testing_list.txt`` lie in the folder, the files they name are
the validation and test parts (that data set's own speaker-disjoint split), the rest is training data.
"""
from __future__ import annotations

import csv
import io
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .errors import DataError, read_text

SPLIT_LISTS = {"valid": "validation_list.txt", "test": "testing_list.txt"}


@dataclass(frozen=True)
class Clip:
    """One WAV file with its label (classification) or transcript (transcription) and its speaker."""

    path: str
    target: str
    speaker: str
    source: str = ""
    """Where the clip was named: the CSV file (with ``line``) or the folder."""
    line: Optional[int] = None


def _wavs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".wav")


def speaker_of(name: str) -> str:
    """The speaker of a file in a label folder: its stem without the last ``_``-separated field."""
    stem = Path(name).stem
    return stem.rsplit("_", 1)[0] if "_" in stem else stem


def read_label_folder(folder: str) -> list[Clip]:
    """The clips of a label folder or a flat FSDD folder (see the module docstring), sorted by path."""
    root = Path(folder).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"speech data folder not found: {root}")
    if not root.is_dir():
        raise DataError(root, "expected a folder of WAV files (one sub-folder per label) or a .csv of "
                              "file,transcript")
    flat = _wavs(root)
    if flat:
        clips = []
        for p in flat:
            parts = p.stem.split("_")
            if len(parts) != 3:
                raise DataError(p, "a WAV file directly in the data folder must be named <label>_<speaker>_<index>"
                                   ".wav (the Free Spoken Digit layout); else put each label's files in a "
                                   "sub-folder named after the label")
            clips.append(Clip(str(p), parts[0], parts[1], str(root)))
        return clips
    clips = []
    for sub in sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(("_", "."))):
        clips += [Clip(str(p), sub.name, f"{speaker_of(p.name)}", str(root)) for p in _wavs(sub)]
    if not clips:
        parts = [d.name for d in sorted(root.iterdir()) if d.name in ("train", "valid", "validation", "test")
                 and d.is_dir() and any(d.glob("*/*.wav"))]
        if parts:
            raise DataError(root, f"no .wav files directly in its label folders, but {', '.join(parts)} hold label "
                                  f"folders: give --data {root}/train --valid_data {root}/valid --test_data "
                                  f"{root}/test (each part's own folder)")
        raise DataError(root, "no .wav files found: expected FOLDER/<label>/*.wav (one sub-folder per label) or "
                              "FOLDER/<label>_<speaker>_<index>.wav")
    return clips


def split_lists(folder: str, clips: Sequence[Clip]) -> Optional[dict[str, list[Clip]]]:
    """Speech Commands' split: ``{"train", "valid", "test"}`` from its list files, or None when it has none."""
    root = Path(folder).expanduser()
    named = {part: root / name for part, name in SPLIT_LISTS.items() if (root / name).is_file()}
    if not named:
        return None
    members = {part: {line.strip() for line in read_text(path, what="split list").splitlines() if line.strip()}
               for part, path in named.items()}
    out: dict[str, list[Clip]] = {"train": [], "valid": [], "test": []}
    for clip in clips:
        rel = Path(clip.path).relative_to(root).as_posix()
        part = next((p for p, names in members.items() if rel in names), "train")
        out[part].append(clip)
    return out


def read_transcripts(path: str, *, file_column: str = "file", transcript_column: str = "transcript",
                     speaker_column: str = "speaker") -> list[Clip]:
    """The clips of a CSV with a header row naming ``file_column`` and ``transcript_column`` (and optionally
    ``speaker_column``). Relative file paths are relative to the CSV's folder; a missing file is a DataError
    naming the CSV line."""
    csv_path = Path(path).expanduser()
    text = read_text(csv_path, what="transcript CSV")
    rows = list(csv.reader(io.StringIO(text)))
    header = [h.strip() for h in rows[0]]
    for column in (file_column, transcript_column):
        if column not in header:
            raise DataError(csv_path, f"no column {column!r} in the header (columns: {', '.join(header)}); "
                                      f"the CSV needs a header row like 'file,transcript'", line=1)
    fi, ti = header.index(file_column), header.index(transcript_column)
    si = header.index(speaker_column) if speaker_column in header else None
    clips = []
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(fi, ti, si or 0):
            raise DataError(csv_path, f"expected {len(header)} columns, got {len(row)}", line=line)
        name, transcript = row[fi].strip(), row[ti].strip()
        if not name or not transcript:
            raise DataError(csv_path, f"empty {file_column if not name else transcript_column}", line=line)
        wav = Path(name).expanduser()
        wav = wav if wav.is_absolute() else csv_path.parent / wav
        if not wav.is_file():
            raise DataError(csv_path, f"the audio file {name!r} does not exist (looked for {wav})", line=line)
        speaker = row[si].strip() if si is not None else speaker_of(wav.name)
        clips.append(Clip(str(wav), transcript, speaker, str(csv_path), line))
    if not clips:
        raise DataError(csv_path, "the transcript CSV has a header but no rows")
    return clips


def split_by_speaker(clips: Sequence[Clip], fraction: float, seed: int) -> tuple[list[Clip], list[Clip]]:
    """(kept, held out): whole speakers held out, drawn in a seeded order until they hold at least ``fraction``
    of the clips (at least one speaker; none when fraction is 0 or there is one speaker)."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"the validation fraction must be in [0, 1), got {fraction}")
    speakers = sorted({c.speaker for c in clips})
    if fraction == 0.0 or len(speakers) < 2:
        return list(clips), []
    random.Random(seed).shuffle(speakers)
    counts = {s: 0 for s in speakers}
    for c in clips:
        counts[c.speaker] += 1
    held: set[str] = set()
    for s in speakers[:-1]:  # always keep one speaker for training
        if sum(counts[h] for h in held) >= fraction * len(clips):
            break
        held.add(s)
    return [c for c in clips if c.speaker not in held], [c for c in clips if c.speaker in held]
