"""Captioning quality on the embedded scenes (run by hand): the CNN + LSTM captioner with soft attention over
the CNN's feature positions against the no-attention baselines (the image vector at the first step, or at
every step), each trained with the same recipe.

Every variant is ``rnnlab train caption`` with the default settings (4,000 generated training scenes, 300
validation and 300 test scenes never seen in training, 1,400 steps of 32) and a different ``--model.attention`` /
``--model.condition``; the test images are captioned greedily and scored by corpus BLEU (sacrebleu) against
all four reference captions of each image. Wall time covers generating the scenes, training, captioning the
held-out images and saving; CPU time is the process's user + system time (on a machine that others load,
the wall time grows and the CPU time does not).

    python benchmarks/quality_caption.py [--max_steps 1400] [--max_time 0] [--threads 2] [--variants ...]

The equivalent commands: ``rnnlab train caption --model.attention soft`` (the default) and
``rnnlab train caption --model.attention none [--model.condition every]``.
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table, setup_threads, write_json  # noqa: E402
from rnnlab.tasks import caption  # noqa: E402
from rnnlab.training import load_bundle  # noqa: E402

VARIANTS = {
    "attention": {"attention": "soft", "condition": "first"},
    "no-attention": {"attention": "none", "condition": "first"},
    "no-attention-every": {"attention": "none", "condition": "every"},
    "attention-gate-dsr": {"attention": "soft", "condition": "first", "attention_gate": True, "attention_penalty": 1.0},
}
DEFAULT_VARIANTS = ["attention", "no-attention", "no-attention-every"]


def config_for(variant: dict, max_steps: int, max_time: float, run_dir: str) -> caption.CaptionConfig:
    """The default config with this model variant and budget."""
    default = caption.CaptionConfig()
    return replace(default, model=replace(default.model, **variant),
                   trainer=replace(default.trainer, max_steps=max_steps, max_time=max_time, progress=False,
                                   curves=False, run_dir=run_dir))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max_steps", type=int, default=1400, help="training steps per variant (the default's)")
    parser.add_argument("--max_time", type=float, default=0.0,
                        help="training seconds cap per variant (0 = none, so that load cannot change the result; "
                             "the default config caps at 100)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (1 on a machine that others load)")
    parser.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS, choices=list(VARIANTS))
    parser.add_argument("--output", default="quality_caption.json", help="the JSON file under docs/results/")
    args = parser.parse_args()
    setup_threads(args.threads)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("rnnlab").setLevel(logging.INFO)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.variants:
            config = config_for(VARIANTS[name], args.max_steps, args.max_time, f"{tmp}/{name}")
            print(f"--- {name}", flush=True)
            t0, c0 = time.perf_counter(), time.process_time()
            path = caption.train(config)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            bundle = load_bundle(path)
            m = bundle.metrics
            rows.append({
                "variant": name, **VARIANTS[name], "params": sum(p.numel() for p in bundle.model.parameters()),
                "steps": m["step"], "train_s": round(m["elapsed_s"], 1), "wall_s": round(wall, 1),
                "cpu_s": round(cpu, 1), "valid_loss": round(m["valid_loss"], 4),
                "valid_bleu": round(m["valid_bleu"], 2), "test_bleu": round(m["test_bleu"], 2),
                **{f"test_p{n}": round(m[f"test_precision_{n}"], 1) for n in range(1, 5)},
                "test_images": m["test_images"],
            })
            print_table(rows[-1:], list(rows[-1]))
    command = "python benchmarks/quality_caption.py " + " ".join(sys.argv[1:])
    path = write_json(args.output, {"command": command.strip(), "max_steps": args.max_steps,
                                               "max_time": args.max_time, "threads": args.threads, "results": rows})
    print()
    print_table(rows, list(rows[0]))
    print(f"\nwritten: {path}")


if __name__ == "__main__":
    main()
