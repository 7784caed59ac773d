"""The fused GRU's element-wise step kernels alone (src/rnnlab/nn/fused_gru.py: ``_infer_step``, ``_forward_step``,
``_backward_step``), at the per-step shapes (B, H) of the five layer shapes of benchmarks/layers.py, with and
without layer norm: µs per step and ns per element of h (B·H).

    cd benchmarks && OMP_NUM_THREADS=1 PYTHONPATH=../src python gru_kernels.py [--threads 1] [--rounds 21]
                                                                             [--clock cpu] [--against MODULE]

The inputs stay in cache (8 steps of saved rows, reused), so this is the kernels' arithmetic and loop overhead, not
a whole sequence's memory traffic (benchmarks/profile_fused_gru.py splits a layer's time). ``--against`` names a
module with the same kernels and signatures (a copy of another fused_gru.py under src/rnnlab/nn/) to time both,
interleaved, with the median of per-round ratios. Writes benchmarks/results/gru_kernels.json (``--out``).
"""
from __future__ import annotations

import numpy as np
import torch

import lstm_kernels
from lstm_kernels import STEPS, rows_of
from rnnlab.nn import fused_gru
from rnnlab.nn.fused_lstm import _scalars


def make(B: int, H: int, ln: bool, rng) -> dict:
    """Every array the three kernels take, float32, for STEPS steps; lengths full except a quarter of the rows."""
    G = 3 * H
    f32 = np.float32
    L = np.full(B, STEPS, np.int64)
    L[: B // 4] = STEPS // 2
    return dict(
        XP=rng.standard_normal((B, STEPS, G)).astype(f32), XT=rng.standard_normal((STEPS, B, G)).astype(f32),
        HP=rng.standard_normal((B, G)).astype(f32), L=L, M=np.ones((B, H), f32),
        P=np.concatenate([0.1 * rng.standard_normal(2 * G), 1 + 0.1 * rng.standard_normal(2 * G)]).astype(f32),
        ST=(0.1 * rng.standard_normal((B, H))).astype(f32), Y=np.zeros((B, STEPS, H), f32),
        YT=np.zeros((STEPS, B, H), f32), HM=np.zeros((B, STEPS, H), f32), HN=np.zeros((B, H), f32),
        SV=np.zeros((5, B, STEPS, H), f32), SL=np.zeros((B, STEPS, (G + 2) if ln else 0), f32),
        SC=_scalars(1e-5, G, H, torch.float32), DY=rng.standard_normal((B, STEPS, H)).astype(f32),
        DHM=rng.standard_normal((B, H)).astype(f32), DXP=np.zeros((B, STEPS, G), f32),
        DHP=np.zeros((B, STEPS, G), f32), DS=rng.standard_normal((B, H)).astype(f32), ACC=np.zeros(4 * G))


def kernels(mod, d: dict, ln: bool) -> dict:
    """kernel name -> a call running it over STEPS steps (all B rows: the trailing (0, B), or nothing for a module
    from before the kernels took a range of rows)."""
    B = d["HN"].shape[0]
    r_inf, r_fwd, r_bwd = (rows_of(k, B) for k in (mod._infer_step, mod._forward_step, mod._backward_step))

    def infer():
        for t in range(STEPS):
            mod._infer_step(t, t, d["XT"], d["HP"], d["P"], d["M"], d["L"], d["ST"], d["YT"], d["HN"], d["SC"], ln,
                            True, *r_inf)

    def forward():
        for t in range(STEPS):
            mod._forward_step(t, d["XP"], d["HP"], d["P"], d["M"], d["L"], d["ST"], d["Y"], d["HM"], d["SV"], d["SL"],
                              d["SC"], ln, *r_fwd)

    def backward():
        for t in range(STEPS - 1, -1, -1):
            mod._backward_step(t, d["DY"], d["DHM"], d["P"], d["M"], d["L"], d["SV"], d["SL"], d["XP"], d["DXP"],
                               d["DHP"], d["DS"], d["ACC"], d["SC"], ln, *r_bwd)

    forward()  # the backward reads what the forward saved
    return {"infer": infer, "forward": forward, "backward": backward}


def measure(B: int, H: int, ln: bool, rounds: int, clock, against) -> list[dict]:
    """lstm_kernels.py's interleaved timing, on fused_gru's kernels; ns per element of h (B·H)."""
    return lstm_kernels.measure(B, H, ln, rounds, clock, against, module=fused_gru, arrays=make, calls_of=kernels,
                                width=1)


if __name__ == "__main__":
    lstm_kernels.main(__doc__, out="gru_kernels.json", rounds=21, ln_first=False, measure_one=measure)
