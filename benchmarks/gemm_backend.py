"""A/B of the matrix-product backend of the fused LSTM (rnnlab.nn._gemm): MKL (torch.mm, as before) against
oneDNN, for the layer-norm and recurrent-dropout LSTM, as ratios to torch.nn.LSTM, interleaved in one process.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/gemm_backend.py
"""
import sys, torch
sys.path.insert(0, __import__("os").path.dirname(__file__))
from common import interleaved, ratio, setup_threads
from layers import SHAPES, train_step, inference
from rnnlab.nn import LSTM, _gemm
setup_threads(1); torch.manual_seed(0)
def toggled(fn, on):
    def run():
        _gemm._ONEDNN = on
        try: fn()
        finally: _gemm._ONEDNN = True
    return run
for i in (0, 3):
    B,T,I,H = SHAPES[i]; x = torch.randn(B,T,I)
    ref = torch.nn.LSTM(I,H,batch_first=True)
    for opt in ({"layer_norm": True}, {"recurrent_dropout": 0.25}):
        m = LSTM(I,H,**opt)
        for mode, make in (("train", train_step), ("infer", inference)):
            m.train(mode == "train"); ref.train(mode == "train")
            f = make(m, x)
            times = interleaved({"torch": make(ref, x), "mkl": toggled(f, False), "onednn": toggled(f, True)}, rounds=11)
            print(SHAPES[i], list(opt)[0], mode, "before(MKL) %.2f after(oneDNN) %.2f" % (ratio(times,"mkl","torch"), ratio(times,"onednn","torch")), flush=True)
