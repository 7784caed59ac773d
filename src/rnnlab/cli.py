"""The ``rnnlab`` command.

For now one subcommand: ``rnnlab demo``, which trains the recurrent layers on the adding problem
(generated on the fly, nothing to download) and prints how well each one remembers. The trainer issue
turns it into the full demo (a character language model end to end).
"""
from __future__ import annotations

import argparse
import sys
import time

import torch
from torch import nn

from rnnlab.data.synthetic import ADDING_BASELINE_MSE, adding_problem
from rnnlab.nn import GRU, LSTM, RNN
from rnnlab.nn import MinGRU


class _Regressor(nn.Module):
    """A recurrent layer and a linear read-out of its last output: sequence -> one value."""

    def __init__(self, layer: nn.Module, hidden_size: int) -> None:
        super().__init__()
        self.layer = layer
        self.head = nn.Linear(hidden_size, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.layer(x)  # (B, T, H)
        return self.head(out[:, -1]).squeeze(1)  # (B,)


def demo(args: argparse.Namespace) -> int:
    torch.manual_seed(args.seed)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    H, T = args.hidden_size, args.length
    models = {
        "RNN (tanh)": RNN(2, H),
        "LSTM": LSTM(2, H),
        "LSTM + layer norm": LSTM(2, H, layer_norm=True),
        "GRU": GRU(2, H),
        "minGRU": MinGRU(2, H),
    }
    g = torch.Generator().manual_seed(args.seed + 1)
    x_test, y_test = adding_problem(1000, T, generator=g)
    print(f"The adding problem, T={T}: remember two marked values among {T} and output their sum.")
    print(f"Predicting the mean scores MSE {ADDING_BASELINE_MSE:.3f}; lower means the network remembers.\n")
    results = []
    for name, layer in models.items():
        model = _Regressor(layer, H)
        opt = torch.optim.Adam(model.parameters(), lr=args.lr)
        t0 = time.perf_counter()
        for step in range(1, args.steps + 1):
            x, y = adding_problem(args.batch_size, T, generator=g)
            loss = nn.functional.mse_loss(model(x), y)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            if step % max(1, args.steps // 5) == 0 or step == args.steps:
                print(f"\r  {name:<18} step {step:>5}/{args.steps}  train MSE {loss.item():.4f}", end="", flush=True)
        with torch.no_grad():
            test = nn.functional.mse_loss(model.eval()(x_test), y_test).item()
        seconds = time.perf_counter() - t0
        print(f"\r  {name:<18} test MSE {test:.4f}  ({seconds:.1f} s)" + " " * 20)
        results.append((name, test, seconds))
    best = min(results, key=lambda r: r[1])
    print(f"\nBest: {best[0]} with test MSE {best[1]:.4f} (baseline {ADDING_BASELINE_MSE:.3f}).")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="rnnlab", description="Recurrent neural networks on PyTorch.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="train RNN, LSTM, GRU and minGRU on the adding problem and compare them")
    p.add_argument("--length", type=int, default=50, help="sequence length T (default: 50)")
    p.add_argument("--steps", type=int, default=600, help="training steps per model (default: 600)")
    p.add_argument("--batch-size", type=int, default=64, help="batch size (default: 64)")
    p.add_argument("--hidden-size", type=int, default=64, help="hidden size H (default: 64)")
    p.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate (default: 0.01)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.set_defaults(run=demo)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, TypeError, FileNotFoundError) as e:
        print(f"rnnlab: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
