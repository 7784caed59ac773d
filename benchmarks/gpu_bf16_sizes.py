"""bf16 autocast against float32 for character LSTM language models on a CUDA GPU, at three sizes (issue 12).

Run by hand on a machine with a GPU:  PYTHONPATH=src python benchmarks/gpu_bf16_sizes.py [--steps 100] [--rounds 3]

The char-LM recipe of ``bf16_textgen.py`` (embedded corpus, k=64, AdamW, clipping) at (H, B, layers) = (256, 32, 1),
(512, 64, 2) and (1024, 128, 2); four contenders per size, each training a fresh model for --steps steps: rnnlab
float32 and bf16 (Trainer.fit) and the plain PyTorch script in float32 and bf16 (data already on the GPU). Rounds
interleaved (order reversed every other round), medians. This measurement is why ``precision="auto"`` keeps float32
for recurrent models on a GPU (``rnnlab.training.trainer.resolve_precision``). Writes
benchmarks/results/gpu_bf16_sizes.json and prints a table.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bf16_textgen as textgen  # noqa: E402
from common import print_table, write_json  # noqa: E402
from rnnlab.structures import LanguageModel  # noqa: E402

SIZES = [(256, 32, 1), (512, 64, 2), (1024, 128, 2)]  # (H, B, layers)


def contenders(H: int, B: int, L: int, train_docs: list, vocab: int) -> dict:
    """name -> fn(steps) -> tokens trained on, for one size (sets bf16_textgen's preset to it)."""
    encoder = dataclasses.replace(textgen.PRESET.model.encoder, hidden_size=H, num_layers=L)
    model_config = dataclasses.replace(textgen.PRESET.model, encoder=encoder)
    textgen.PRESET = dataclasses.replace(textgen.PRESET, model=model_config, batch_size=B)
    data = textgen.batchify(torch.cat(train_docs), B)

    def ours(precision):
        def run(steps):
            torch.manual_seed(0)
            return textgen.rnnlab_train(LanguageModel(model_config.build(vocab)), train_docs, steps, precision, 0)
        return run

    def plain(bf16):
        def run(steps):
            torch.manual_seed(0)
            model = textgen.CharLSTM(vocab, model_config.embedding_size, H)
            model.lstm = torch.nn.LSTM(model_config.embedding_size, H, num_layers=L, batch_first=True)
            return textgen.plain_train(model.cuda(), data, steps, bf16)
        return run

    return {"rnnlab float32": ours("float32"), "rnnlab bf16": ours("bf16"),
            "plain float32": plain(False), "plain bf16": plain(True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="training steps per timed run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per size")
    parser.add_argument("--out", default="gpu_bf16_sizes.json", help="file name under benchmarks/results/")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu_bf16_sizes.py needs a CUDA GPU (torch sees none)")
    logging.disable(logging.INFO)
    textgen.DEVICE[0] = torch.device("cuda")
    train_docs, _, vocab = textgen.text_corpus()
    rows = []
    for H, B, L in SIZES:
        runs = contenders(H, B, L, train_docs, vocab)
        for run in runs.values():
            run(10)  # warm-up: cuDNN's plans, the allocator
        speed: dict = {name: [] for name in runs}
        for r in range(args.rounds):
            for name in list(runs) if r % 2 == 0 else list(runs)[::-1]:
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                tokens = runs[name](args.steps)
                torch.cuda.synchronize()
                speed[name].append(tokens / (time.perf_counter() - t0))
        med = {name: statistics.median(v) for name, v in speed.items()}
        rows.append({"H": H, "B": B, "layers": L, **{f"{k} tok/s": round(v) for k, v in med.items()},
                     "rnnlab bf16/float32": med["rnnlab bf16"] / med["rnnlab float32"],
                     "plain bf16/float32": med["plain bf16"] / med["plain float32"],
                     "rnnlab/plain float32": med["rnnlab float32"] / med["plain float32"]})
        print(rows[-1], flush=True)
    path = write_json(args.out, {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                                 "steps": args.steps, "rounds": args.rounds, "rows": rows})
    print_table(rows, ["H", "B", "layers", "rnnlab bf16/float32", "plain bf16/float32", "rnnlab/plain float32"])
    print(f"written {path}")


if __name__ == "__main__":
    main()
