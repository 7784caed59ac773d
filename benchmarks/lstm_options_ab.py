"""Two versions of the fused LSTM (rnnlab.nn.fused_lstm) against each other and torch.nn.LSTM, in one process.

    cd benchmarks && OMP_NUM_THREADS=1 python lstm_options_ab.py --old rnnlab.nn._fused_lstm_before \
        [--new rnnlab.nn.fused_lstm] [--threads 1] [--rounds 9] [--clock cpu] [--shapes 1,0,4,3,2]
        [--modes infer,train,rd_train]

``--old``/``--new`` name modules with ``lstm_sequence`` (e.g. an older fused_lstm.py copied next to the current one:
``git show REV:src/rnnlab/nn/fused_lstm.py > src/rnnlab/nn/_fused_lstm_before.py``). Modes: ``infer`` the
layer-norm LSTM under no_grad, ``train`` its forward + backward of y.mean() with every gradient, ``rd_train`` the
same for recurrent dropout (p = 0.25, no layer norm); torch.nn.LSTM runs the matching step (benchmarks/layers.py).
All three interleaved per round (order alternating), medians of per-round ratios, so that a loaded machine's
slow spells hit all of them alike; ``--clock cpu`` counts this thread's CPU time only. Writes
benchmarks/results/lstm_options_ab.json (``--out``) and prints a table.
"""
from __future__ import annotations

import argparse
import importlib

import torch

from common import CLOCKS, interleaved, median_ms, print_table, ratio, setup_threads, write_json
from layers import SHAPES, inference, train_step

MODES = ("infer", "train", "rd_train")


def contenders(mod, mode: str, x, w: list, ln: dict, mask):
    """A call of ``mod.lstm_sequence`` for ``mode`` on these weights."""
    params = w + [ln["ln_ih"], ln["ln_hh"], *ln["ln_c"]]

    def run():
        if mode == "infer":
            with torch.no_grad():
                return mod.lstm_sequence(x, None, None, *w, **ln)
        for p in params:
            p.grad = None
        opts = dict(mask=mask) if mode == "rd_train" else ln
        y, _, _ = mod.lstm_sequence(x, None, None, *w, **opts)
        y.mean().backward()

    return run


def compare(shape, modes, old, new, rounds: int, clock) -> list[dict]:
    B, T, I, H = shape
    G = 4 * H
    torch.manual_seed(0)
    x = torch.randn(B, T, I)
    ref = torch.nn.LSTM(I, H, batch_first=True)
    w = [p.detach().clone().requires_grad_() for p in ref.parameters()]
    ln = dict(ln_ih=torch.ones(G, requires_grad=True), ln_hh=torch.ones(G, requires_grad=True),
              ln_c=(torch.ones(H, requires_grad=True), torch.zeros(H, requires_grad=True)))
    mask = torch.bernoulli(torch.full((B, H), 0.75)) / 0.75
    rows = []
    for mode in modes:
        torch_run = (inference if mode == "infer" else train_step)(ref.train(mode != "infer"), x)
        fns = {"torch": torch_run, "old": contenders(old, mode, x, w, ln, mask),
               "new": contenders(new, mode, x, w, ln, mask)}
        times = interleaved(fns, rounds=rounds, clock=clock)
        rows.append({"shape": f"{B},{T},{I},{H}", "mode": mode, **{f"{k}_ms": median_ms(v) for k, v in times.items()},
                     "old/torch": ratio(times, "old", "torch"), "new/torch": ratio(times, "new", "torch"),
                     "new/old": ratio(times, "new", "old")})
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", required=True, help="module with lstm_sequence, e.g. rnnlab.nn._fused_lstm_before")
    parser.add_argument("--new", default="rnnlab.nn.fused_lstm")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall")
    parser.add_argument("--shapes", default="1,0,4,3,2", help="indices into layers.SHAPES")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--out", default="lstm_options_ab.json", help="file name under benchmarks/results/")
    args = parser.parse_args()
    setup_threads(args.threads)
    modes = args.modes.split(",")
    if unknown := set(modes) - set(MODES):
        parser.error(f"--modes: unknown {sorted(unknown)}; choose from {', '.join(MODES)}")
    old, new = importlib.import_module(args.old), importlib.import_module(args.new)
    rows = [row for i in args.shapes.split(",")
            for row in compare(SHAPES[int(i)], modes, old, new, args.rounds, CLOCKS[args.clock])]
    path = write_json(args.out, {"threads": args.threads, "rounds": args.rounds, "clock": args.clock,
                                 "old": args.old, "new": args.new, "rows": rows})
    print_table(rows, ["shape", "mode", "torch_ms", "old_ms", "new_ms", "old/torch", "new/torch", "new/old"])
    print(f"\nwritten {path}")


if __name__ == "__main__":
    main()
