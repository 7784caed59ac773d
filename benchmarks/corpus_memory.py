"""Peak memory of textgen's data preparation on corpora of 50 MB and 500 MB: bytes of RAM per token.

For each size a synthetic text (random words from a fixed vocabulary, in a temporary folder, deleted after) is
prepared as ``rnnlab.tasks.textgen.train`` prepares it: stream the file, split off validation, fit the
tokenizer chunk by chunk, encode into the memmapped id cache, build the train and valid streams and iterate
one epoch of each (no model). Each preparation runs in a fresh worker process, started by a fresh measuring
process that reads ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` once the worker exits (so it sees that worker only).
The baseline is a worker that only imports torch and rnnlab; the figure is (peak - baseline) / tokens.
The goal is <= 3 bytes per token beyond the model. Peak RSS counts the memmap's pages that the epoch touched
(file-backed and reclaimable; one byte per token for a char vocabulary of < 256).

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/corpus_memory.py [--sizes_mb 50 500] [--tokenizer char]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table, write_json  # noqa: E402

WORDS = 5000


def make_corpus(path: Path, size_mb: int, seed: int = 0) -> None:
    """``size_mb`` MB of random words (a fixed vocabulary of lowercase words) in lines of 12, written by blocks."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocab = np.array(["".join(rng.choice(letters, rng.integers(2, 10))) for _ in range(WORDS)])
    target, written = size_mb * 1_000_000, 0
    with open(path, "w", encoding="utf-8") as f:
        while written < target:
            words = vocab[rng.integers(0, WORDS, 120_000)].reshape(-1, 12)
            block = "\n".join(" ".join(line) for line in words) + "\n"
            f.write(block[:target - written])
            written += min(len(block), target - written)


def prepare(data: str, tokenizer: str, run_dir: str, batch_size: int, bptt: int) -> dict:
    """textgen's data preparation, as in ``train``; -> tokens, batches, seconds."""
    from rnnlab.data.fingerprint import fingerprint_path
    from rnnlab.data.text import corpus_sources, split_lengths
    from rnnlab.data.tokenize import train_tokenizer
    from rnnlab.tasks import textgen

    t0 = time.perf_counter()
    sources = corpus_sources(data)
    train_docs, valid_docs = split_lengths([s.num_chars() for s in sources], 0.1)
    tok = train_tokenizer(tokenizer, textgen._texts(sources, train_docs, tokenizer), vocab_size=4096)
    key = {"data": {"data": fingerprint_path(data)}, "valid_fraction": 0.1}
    cache = Path(run_dir) / "cache"
    train_ids = textgen._ids(cache, "train", sources, train_docs, tok, **key)
    valid_ids = textgen._ids(cache, "valid", sources, valid_docs, tok, **key)
    t1 = time.perf_counter()
    batches = 0
    for stream in (textgen._stream(train_ids, batch_size=batch_size, bptt=bptt, shuffle_seed=0),
                   textgen._stream(valid_ids, batch_size=batch_size, bptt=bptt)):
        for _batch in stream:
            batches += 1
    return {"tokens": train_ids.tokens + valid_ids.tokens, "batches": batches, "dtype": str(train_ids.ids.dtype),
            "tokenise_s": t1 - t0, "epoch_s": time.perf_counter() - t1}


def measure(args: list[str]) -> dict:
    """Run a worker with ``args`` and return its result with its peak RSS in bytes (ru_maxrss is in KiB)."""
    out = subprocess.run([sys.executable, __file__, "--worker", *args], check=True, capture_output=True, text=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["peak_rss"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    return result


def measured(args: list[str]) -> dict:
    """``measure`` in a fresh process, so that RUSAGE_CHILDREN sees one worker only."""
    out = subprocess.run([sys.executable, __file__, "--measure", *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes_mb", type=int, nargs="+", default=[50, 500])
    p.add_argument("--tokenizer", default="char", choices=["char", "word"])
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--bptt", type=int, default=64)
    p.add_argument("--worker", nargs="*")
    p.add_argument("--measure", nargs="*")
    a = p.parse_args()
    if a.worker is not None:
        import rnnlab.tasks.textgen  # noqa: F401  (the baseline imports torch and rnnlab)
        result = {} if not a.worker else prepare(a.worker[0], a.worker[1], a.worker[2], int(a.worker[3]),
                                                   int(a.worker[4]))
        print(json.dumps(result))
        return
    if a.measure is not None:
        print(json.dumps(measure(a.measure)))
        return

    baseline = measured([])["peak_rss"]
    rows = []
    for size in a.sizes_mb:
        with tempfile.TemporaryDirectory(prefix="rnnlab-corpus-") as tmp:
            data = Path(tmp) / "corpus.txt"
            make_corpus(data, size)
            r = measured([str(data), a.tokenizer, str(Path(tmp) / "run"), str(a.batch_size), str(a.bptt)])
        extra = r["peak_rss"] - baseline
        rows.append({"size_mb": size, "tokenizer": a.tokenizer, "dtype": r["dtype"], "tokens": r["tokens"],
                     "batches": r["batches"], "peak_rss_mb": round(r["peak_rss"] / 2**20, 1),
                     "baseline_mb": round(baseline / 2**20, 1), "extra_mb": round(extra / 2**20, 1),
                     "bytes_per_token": round(extra / r["tokens"], 3), "tokenise_s": round(r["tokenise_s"], 1),
                     "epoch_s": round(r["epoch_s"], 1)})
        print_table(rows[-1:], list(rows[-1]))
    print_table(rows, list(rows[0]))
    path = write_json("corpus_memory.json", {"batch_size": a.batch_size, "bptt": a.bptt,
                                        "goal_bytes_per_token": 3, "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
