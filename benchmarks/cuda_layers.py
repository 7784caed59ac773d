"""rnnlab's layers against torch.nn's on a CUDA GPU: training step (forward + backward) and inference.

Run by hand on a machine with a GPU: ``python benchmarks/cuda_layers.py``. Interleaved runs, medians, CUDA
events; writes benchmarks/results/cuda_layers.json and prints a table of times and rnnlab/torch.nn ratios.
"""
from __future__ import annotations

import argparse
import json
import statistics
import warnings
from pathlib import Path

import torch

from rnnlab.nn import GRU, LSTM, MinGRU

SHAPES = [(64, 128, 256, 512), (16, 512, 128, 256), (256, 64, 512, 1024)]  # (B, T, I, H)


def _time(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", default="benchmarks/results/cuda_layers.json")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="RNN module weights are not part")
    rows = []
    for B, T, I, H in SHAPES:
        for name, ours_cls, ref_cls, kwargs in [
            ("lstm", LSTM, torch.nn.LSTM, {}), ("gru", GRU, torch.nn.GRU, {}),
            ("lstm-layer-norm", LSTM, torch.nn.LSTM, {"layer_norm": True}), ("mingru", MinGRU, torch.nn.LSTM, {}),
        ]:
            torch.manual_seed(0)
            ours = ours_cls(I, H, **kwargs).cuda()
            ref = ref_cls(I, H, batch_first=True).cuda()
            x = torch.randn(B, T, I, device="cuda", requires_grad=True)

            def train(m, x=x):
                return lambda: m(x)[0].sum().backward()

            def infer(m, x=x):
                def run():
                    with torch.no_grad():
                        m(x)
                return run

            for mode, make in (("train", train), ("infer", infer)):
                f_ours, f_ref = make(ours), make(ref)
                for _ in range(3):
                    f_ours(), f_ref()
                t_ours, t_ref = [], []
                for _ in range(args.repeats):  # interleaved
                    t_ours += _time(f_ours, 1)
                    t_ref += _time(f_ref, 1)
                mo, mr = statistics.median(t_ours), statistics.median(t_ref)
                rows.append(dict(layer=name, mode=mode, B=B, T=T, I=I, H=H, rnnlab_ms=mo, torch_nn_ms=mr,
                                 ratio=mo / mr))
                print(f"{name:<16} {mode:<5} B={B:<4} T={T:<4} I={I:<4} H={H:<5} rnnlab {mo:8.2f} ms  "
                      f"torch.nn.{ref_cls.__name__} {mr:8.2f} ms  ratio {mo / mr:5.2f}", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows}
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
