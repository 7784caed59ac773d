"""A/B of the fused GRU or RNN sequence kernels (src/rnnlab/nn/fused_gru.py, fused_rnn.py) against another version of
the same module, at the five layer shapes of benchmarks/layers.py: inference (no grad) and a training step (forward
and backward), plain and with layer norm, float32. Both run in the same rounds, interleaved, and the ratio is the
median over rounds of time(now) / time(against) in the same round.

    cp <older fused_gru.py> src/rnnlab/nn/_old_fused_gru.py
    cd benchmarks && OMP_NUM_THREADS=1 PYTHONPATH=../src python sequence_ab.py --cell GRU \\
        --against rnnlab.nn._old_fused_gru [--threads 1] [--rounds 9] [--budget 20] [--clock cpu]

Without ``--against`` only the current module is timed. Writes benchmarks/results/sequence_ab_<cell>.json (``--out``).
"""
from __future__ import annotations

import argparse
import importlib
import time

import torch

from common import CLOCKS, interleaved, median_ms, print_table, ratio, setup_threads, write_json
from layers import SHAPES

MODULES = {"GRU": ("rnnlab.nn.fused_gru", "gru_sequence", 3), "RNN": ("rnnlab.nn.fused_rnn", "rnn_sequence", 1)}


def case(B: int, T: int, I: int, H: int, gates: int, ln: bool) -> tuple[list, dict]:
    """Positional args and keyword options of the sequence function, every parameter a leaf requiring grad."""
    g = torch.Generator().manual_seed(0)
    G = gates * H

    def leaf(*shape, scale=1.0, shift=0.0):
        return (shift + scale * torch.randn(*shape, generator=g)).requires_grad_()

    args = [torch.randn(B, T, I, generator=g), None, leaf(G, I, scale=I ** -0.5), leaf(G, H, scale=H ** -0.5),
            leaf(G, scale=0.1), leaf(G, scale=0.1)]
    kw = dict(ln_ih=leaf(G, scale=0.1, shift=1.0), ln_hh=leaf(G, scale=0.1, shift=1.0)) if ln else {}
    return args, kw


def calls(fn, args, kw) -> dict:
    def infer():
        with torch.no_grad():
            fn(*args, **kw)

    def train():
        y, h = fn(*args, **kw)
        (y.sum() + h.sum()).backward()

    return {"infer": infer, "train": train}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cell", choices=sorted(MODULES), default="GRU")
    parser.add_argument("--against", default=None,
                        help="module with the same entry point, e.g. rnnlab.nn._old_fused_gru")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--budget", type=float, default=20.0, help="seconds per case after which rounds stop")
    parser.add_argument("--shapes", default=None, help="indices into layers.SHAPES, e.g. 0,3 (default: all five)")
    parser.add_argument("--modes", default="infer,train")
    parser.add_argument("--no-layer-norm", action="store_true")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall")
    parser.add_argument("--out", default=None, help="file name under benchmarks/results/")
    args = parser.parse_args()
    setup_threads(args.threads)
    module, name, gates = MODULES[args.cell]
    fns = {"now": getattr(importlib.import_module(module), name)}
    if args.against:
        fns["against"] = getattr(importlib.import_module(args.against), name)
    shapes = [SHAPES[int(i)] for i in args.shapes.split(",")] if args.shapes else SHAPES
    rows = []
    t_start = time.perf_counter()
    for B, T, I, H in shapes:
        for ln in (False,) if args.no_layer_norm else (False, True):
            a, kw = case(B, T, I, H, gates, ln)
            per = {k: calls(f, a, kw) for k, f in fns.items()}
            for mode in args.modes.split(","):
                run = {k: per[k][mode] for k in fns}
                probe = interleaved(run, rounds=1, warmup=2, clock=CLOCKS[args.clock])  # compile, then one round
                each = sum(v[0] for v in probe.values())
                rounds = max(3, min(args.rounds, int(args.budget / max(each, 1e-9))))
                times = interleaved(run, rounds=rounds, warmup=0, clock=CLOCKS[args.clock])
                row = {"shape": f"{B},{T},{I},{H}", "ln": ln, "mode": mode, "rounds": rounds,
                       "now_ms": median_ms(times["now"])}
                if args.against:
                    row["against_ms"] = median_ms(times["against"])
                    row["ratio"] = ratio(times, "now", "against")
                rows.append(row)
                print(row, flush=True)
    seconds = time.perf_counter() - t_start
    path = write_json(args.out or f"sequence_ab_{args.cell.lower()}.json",
                      {"cell": args.cell, "against": args.against, "threads": args.threads, "clock": args.clock,
                       "seconds": seconds, "rows": rows})
    print_table(rows, ["shape", "ln", "mode", "rounds", "now_ms"] + (["against_ms", "ratio"] if args.against else []))
    print(f"\n{seconds:.0f} s; written {path}")


if __name__ == "__main__":
    main()
