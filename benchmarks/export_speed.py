"""onnxruntime against PyTorch: inference time of an exported language model's graphs on the CPU.

Run by hand:  .venv/bin/python benchmarks/export_speed.py [--cells lstm gru] [--rounds 30] [--hidden 128]

For each cell a LanguageModel (vocabulary 64, embedding 64, one layer of H units) is exported with
``rnnlab.export.to_onnx`` (checked against PyTorch), then, in the same process and interleaved (one call of
each per round, order alternating), timed at two shapes of the sequence graph, (B, T) = (1, 256) and
(16, 128), with variable lengths, and at one step of the step graph (B = 1, what a streaming app calls):

- PyTorch: ``model({"x", "lengths", "state"})`` under no_grad (rnnlab's fastest path: torch's oneDNN LSTM,
  rnnlab's numba GRU and layer-norm LSTM, minGRU's parallel scan); step: ``encoder.step`` + the head.
- onnxruntime: the exported graph (an ONNX Scan over the cell's step), one CPU session, the same threads.

Reports medians and the median per-round ratio onnxruntime / PyTorch (< 1: onnxruntime faster). Writes
benchmarks/results/export_speed.json and prints a table. Export takes tens of seconds per cell.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from common import interleaved, median_ms, print_table, ratio, setup_threads, write_json
from rnnlab.export import to_onnx
from rnnlab.export.onnx_export import _sequence_example, _step_example, session
from rnnlab.nn.state import LSTMState
from rnnlab.structures import LanguageModel, LanguageModelConfig
from rnnlab.structures.encoders import EncoderConfig

ENCODERS = {
    "lstm": dict(kind="lstm"), "gru": dict(kind="gru"), "rnn": dict(kind="rnn"),
    "ln-lstm": dict(kind="lstm", layer_norm=True), "mingru": dict(kind="mingru"),
}
SHAPES = [(1, 256), (16, 128)]


def build(cell: str, hidden: int) -> LanguageModel:
    torch.manual_seed(0)
    encoder = EncoderConfig(hidden_size=hidden, **ENCODERS[cell])
    return LanguageModel(LanguageModelConfig(vocab_size=64, embedding_size=64, encoder=encoder)).eval()


def contenders_sequence(model, sess, args) -> dict:
    x, lengths, *state = args
    st = LSTMState(*state) if len(state) == 2 else state[0]
    feed = {n: a.numpy() for n, a in zip(["x", "lengths", "h0", "c0"], args)}

    @torch.no_grad()
    def pytorch():
        model({"x": x, "lengths": lengths, "state": st})

    return {"pytorch": pytorch, "onnxruntime": lambda: sess.run(None, feed)}


def contenders_step(model, sess, args) -> dict:
    x, *state = args
    st = LSTMState(*state) if len(state) == 2 else state[0]
    feed = {n: a.numpy() for n, a in zip(["x", "h0", "c0"], args)}

    @torch.no_grad()
    def pytorch():
        y, _ = model.encoder.step(model.inputs.embedding(x), st)
        model.head(y)

    return {"pytorch": pytorch, "onnxruntime": lambda: sess.run(None, feed)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", nargs="+", default=["lstm", "gru"], choices=list(ENCODERS))
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    setup_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for cell in args.cells:
            model = build(cell, args.hidden)
            t0 = time.perf_counter()
            result = to_onnx(model, Path(tmp) / f"{cell}.onnx")
            export_s = time.perf_counter() - t0
            cases = [(f"sequence B={B} T={T}", result.sequence, contenders_sequence,
                      _sequence_example(model, B, T, seed=1)) for B, T in SHAPES]
            cases.append(("step B=1", result.step, contenders_step, _step_example(model, 1, seed=1)))
            for name, path, make, example in cases:
                sess = session(path, threads=args.threads)
                times = interleaved(make(model, sess, example), rounds=args.rounds)
                rows.append({"cell": cell, "graph": name, "pytorch_ms": median_ms(times["pytorch"]),
                             "onnxruntime_ms": median_ms(times["onnxruntime"]),
                             "ort/pytorch": ratio(times, "onnxruntime", "pytorch"), "export_s": export_s})
    columns = ["cell", "graph", "pytorch_ms", "onnxruntime_ms", "ort/pytorch", "export_s"]
    path = write_json("export_speed.json", {"hidden": args.hidden, "rounds": args.rounds, "rows": rows})
    print_table(rows, columns)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
