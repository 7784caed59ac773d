"""Tagging quality on real data: POS tagging of the OANC sample, with and without char features and the CRF.

    OMP_NUM_THREADS=2 PYTHONPATH=src python benchmarks/quality_tag.py [--max_time 240] [--variants cnn+crf ...]

Each variant trains the configs/tag-oanc.yaml recipe for at most --max_time seconds on --threads threads,
then scores the test file once (token accuracy). Writes benchmarks/results/quality_tag.json and prints a table.
The data: ~/.cache/rnnlab-data/pos/oanc.{train,valid,test}.conll (`rnnlab datasets prepare pos`).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import RESULTS  # noqa: E402
from rnnlab.tasks import tag  # noqa: E402
from rnnlab.training.checkpoint import from_dict  # noqa: E402

VARIANTS = {  # name -> (char_encoder, crf)
    "cnn+crf": ("cnn", True),
    "cnn": ("cnn", False),
    "words+crf": ("none", True),
    "words": ("none", False),
    "lstm+crf": ("lstm", True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["cnn+crf", "cnn", "words+crf", "words"],
                        choices=list(VARIANTS))
    parser.add_argument("--max_time", type=float, default=240.0, help="training seconds per variant")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data_dir", default="~/.cache/rnnlab-data/pos")
    parser.add_argument("--run_root", default="runs/quality_tag")
    parser.add_argument("--out", default=str(RESULTS / "quality_tag.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    preset = yaml.safe_load((ROOT / "configs" / "tag-oanc.yaml").read_text())
    data = os.path.expanduser(args.data_dir)
    preset.update(data=f"{data}/oanc.train.conll", valid_data=f"{data}/oanc.valid.conll",
                  test_data=f"{data}/oanc.test.conll")
    base = from_dict(tag.TagConfig, preset)
    results = []
    for name in args.variants:
        char_encoder, crf = VARIANTS[name]
        config = replace(base, model=replace(base.model, char_encoder=char_encoder, crf=crf),
                         trainer=replace(base.trainer, max_time=args.max_time, progress=False, curves=False,
                                         run_dir=f"{args.run_root}/{name}"))
        t0 = time.perf_counter()
        path = tag.train(config)
        wall = time.perf_counter() - t0
        metrics = json.loads((path / "metrics.json").read_text())
        results.append({"variant": name, "char_encoder": char_encoder, "crf": crf,
                        "test_accuracy": metrics["test_accuracy"], "valid_accuracy": metrics["valid_accuracy"],
                        "steps": metrics["step"], "epochs": metrics["epoch"], "train_s": metrics["elapsed_s"],
                        "wall_s": wall, "test_tokens": metrics["test_tokens"]})
        print(f"{name}: test accuracy {metrics['test_accuracy']:.4f} ({wall:.0f} s)", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "quality_tag", "threads": args.threads, "max_time": args.max_time,
                               "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
                               "results": results}, indent=2))
    print(f"\n{'variant':<12} {'char':<6} {'crf':<5} {'test acc':>9} {'valid acc':>9} {'steps':>6} {'epochs':>6} "
          f"{'wall s':>7}")
    for r in results:
        print(f"{r['variant']:<12} {r['char_encoder']:<6} {str(r['crf']):<5} {r['test_accuracy']:>9.4f} "
              f"{r['valid_accuracy']:>9.4f} {r['steps']:>6} {r['epochs']:>6} {r['wall_s']:>7.0f}")
    print(f"\nwritten: {out}")


if __name__ == "__main__":
    main()
