"""rnnlab's recurrent layers against torch.nn in the same process: training step and inference.

Run by hand:  .venv/bin/python benchmarks/layers.py [--rounds 15] [--quick] [--groups step,generate --threads 1]

Five groups, each as a ratio to torch.nn (time rnnlab / time torch.nn; below 1 is faster):
1. plain LSTM, GRU, RNN (rnnlab's LSTM and RNN run torch's own kernel: the wrapper must cost nothing, target
   <= 1.05; rnnlab's GRU runs its numba kernel on the CPU, target <= 0.77, i.e. 1.3x faster; in detail, with
   the numba kernel forced and the layer-norm GRU: benchmarks/fused_gru.py);
2. the options torch's kernels cannot run: layer-norm LSTM and recurrent-dropout LSTM (p=0.25),
   against torch.nn.LSTM of the same size (target: training <= 2.0 at (32,100,128,256) and (64,100,256,512));
   the plain autograd loop (impl="loop") is measured at the first shape for context;
3. minGRU / minLSTM training and inference against torch.nn.LSTM (target at (16,1024,128,256): minGRU
   training <= 0.67, i.e. at least 1.5x faster);
4. ``step``: streaming at batch 1, ``layer.step`` of the LSTM, GRU and RNN with 1 and 2 layers at (I, H) =
   (64, 256) and (256, 1024) against torch.nn.LSTMCell/GRUCell/RNNCell (two chained for two layers), target
   <= 1.1 (issue 12), and at (8, 8), where the kernel is negligible and the Python around it is what is
   measured; ``extra_us`` is what remains per step above torch's, in microseconds. Measure it with
   ``--groups step --threads 1``;
5. ``generate``: LanguageModel.generate sampling 100 tokens at batch 1 (vocabulary 96, embedding 64, hidden 256,
   1 and 2 layers of LSTM, GRU, RNN) against the plain PyTorch loop of the same size (embedding -> torch.nn
   cells -> linear -> softmax -> multinomial); tokens per second and the ratio of times per token.
A training step is forward + backward of outputs.mean() with parameter gradients; inference is the
forward under torch.no_grad(). Writes benchmarks/results/layers.json and prints a table.
"""
from __future__ import annotations

import argparse
import statistics

import torch
from torch import nn

from common import CLOCKS, interleaved, median_ms, print_table, ratio, setup_threads, write_json
from rnnlab.nn import GRU, LSTM, RNN
from rnnlab.nn.min_rnn import MinGRU, MinLSTM
from rnnlab.structures.encoders import EncoderConfig
from rnnlab.structures.language_model import LanguageModel, LanguageModelConfig

SHAPES = [(32, 100, 128, 256), (64, 200, 64, 128), (8, 500, 32, 64), (64, 100, 256, 512), (16, 1024, 128, 256)]
TORCH = {"LSTM": nn.LSTM, "GRU": nn.GRU, "RNN": nn.RNN}
OURS = {"LSTM": LSTM, "GRU": GRU, "RNN": RNN}


def train_step(model: nn.Module, x: torch.Tensor):
    def run():
        model.zero_grad(set_to_none=True)
        out, _ = model(x)
        out.mean().backward()

    return run


def inference(model: nn.Module, x: torch.Tensor):
    def run():
        with torch.no_grad():
            model(x)

    return run


def measure(group: str, shape, contenders: dict[str, nn.Module], baseline: str, rounds: int, modes) -> list[dict]:
    B, T, I, H = shape
    x = torch.randn(B, T, I)
    rows = []
    for mode in modes:
        make = train_step if mode == "train" else inference
        fns = {name: make(m.train(mode == "train"), x) for name, m in contenders.items()}
        times = interleaved(fns, rounds=rounds)
        for name in contenders:
            if name == baseline:
                continue
            rows.append({
                "group": group, "shape": f"{B},{T},{I},{H}", "mode": mode, "model": name,
                "ms": median_ms(times[name]), "torch_ms": median_ms(times[baseline]),
                "ratio": ratio(times, name, baseline), "baseline": baseline,
            })
    return rows


STEP_SHAPES = [(8, 8), (64, 256), (256, 1024)]  # (8, 8): a negligible kernel, so the Python around it is measured
STEP_CELLS = {"LSTM": nn.LSTMCell, "GRU": nn.GRUCell, "RNN": nn.RNNCell}


def streaming_contenders(kind: str, I: int, H: int, layers: int, steps: int, batch: int = 1) -> dict:
    """``steps`` steps of ``batch`` rows (1: one stream) from a zero state: rnnlab's layer.step against a chain of
    torch.nn cells."""
    ours = OURS[kind](I, H, num_layers=layers).eval()
    cells = [STEP_CELLS[kind](I if l == 0 else H, H).eval() for l in range(layers)]
    x = torch.randn(batch, I)
    lstm = kind == "LSTM"

    def run_ours():
        with torch.no_grad():
            s = None
            for _ in range(steps):
                _, s = ours.step(x, s)

    def run_torch():
        with torch.no_grad():
            s = [None] * layers
            for _ in range(steps):
                y = x
                for l, cell in enumerate(cells):
                    s[l] = cell(y, s[l])
                    y = s[l][0] if lstm else s[l]

    return {"torch": run_torch, "ours": run_ours}


def measure_streaming(rounds: int, steps: int, clock) -> list[dict]:
    """Streaming, one step at a time with batch 1 (serving, generation): layer.step vs torch.nn's cells
    (for L layers, L cells chained). ``extra_us``: the time per step above torch's, in microseconds."""
    rows = []
    for I, H in STEP_SHAPES:
        for layers in (1, 2):
            for kind in STEP_CELLS:
                fns = streaming_contenders(kind, I, H, layers, steps)
                times = interleaved(fns, rounds=rounds, clock=clock)
                ms, torch_ms = median_ms(times["ours"]) / steps, median_ms(times["torch"]) / steps
                rows.append({"group": "step", "shape": f"1,{layers}L,{I},{H}", "mode": "infer",
                             "model": f"rnnlab {kind}.step", "ms": ms, "torch_ms": torch_ms,
                             "ratio": ratio(times, "ours", "torch"),
                             "extra_us": extra_us(times, "ours", "torch", steps),
                             "baseline": f"{layers} x torch.nn.{kind}Cell"})
    return rows


GENERATE = dict(vocab=96, embedding=64, hidden=256, tokens=100)


def generation_contenders(kind: str, layers: int) -> dict:
    """Sampling ``tokens`` tokens at batch 1: LanguageModel.generate against the plain PyTorch loop of the same
    size (embedding -> torch.nn cells -> linear -> softmax -> multinomial)."""
    V, E, H, N = GENERATE["vocab"], GENERATE["embedding"], GENERATE["hidden"], GENERATE["tokens"]
    lm = LanguageModel(LanguageModelConfig(vocab_size=V, embedding_size=E,
                                           encoder=EncoderConfig(kind=kind, hidden_size=H, num_layers=layers))).eval()
    embedding, head = nn.Embedding(V, E), nn.Linear(H, V)
    cells = [STEP_CELLS[kind.upper()](E if l == 0 else H, H) for l in range(layers)]
    lstm = kind == "lstm"
    prompt = torch.tensor([[1]])

    def run_plain():
        with torch.no_grad():
            token, s, out = prompt[:, 0], [None] * layers, []
            for _ in range(N):
                y = embedding(token)
                for l, cell in enumerate(cells):
                    s[l] = cell(y, s[l])
                    y = s[l][0] if lstm else s[l]
                token = torch.multinomial(torch.softmax(head(y), dim=-1), 1).squeeze(1)
                out.append(token)
            return torch.stack(out, dim=1)

    def run_ours():
        return lm.generate(prompt, max_new_tokens=N)

    return {"torch": run_plain, "ours": run_ours}


def measure_generation(rounds: int, clock) -> list[dict]:
    """Tokens per second of LanguageModel.generate (sampling, batch 1) against the plain loop."""
    rows, N = [], GENERATE["tokens"]
    for layers in (1, 2):
        for kind in ("lstm", "gru", "rnn"):
            times = interleaved(generation_contenders(kind, layers), rounds=rounds, clock=clock)
            ms, torch_ms = median_ms(times["ours"]) / N, median_ms(times["torch"]) / N
            rows.append({"group": "generate", "shape": f"1,{layers}L,{GENERATE['embedding']},{GENERATE['hidden']}",
                         "mode": "sample", "model": f"LanguageModel {kind}", "ms": ms, "torch_ms": torch_ms,
                         "ratio": ratio(times, "ours", "torch"), "extra_us": extra_us(times, "ours", "torch", N),
                         "tokens_per_s": 1e3 / ms, "torch_tokens_per_s": 1e3 / torch_ms,
                         "baseline": f"embedding + {layers} x torch.nn.{kind.upper()}Cell + linear + multinomial"})
    return rows


def extra_us(times: dict, name: str, baseline: str, n: int) -> float:
    """Median over rounds of (time(name) - time(baseline)) / n, in microseconds."""
    return 1e6 * statistics.median((a - b) / n for a, b in zip(times[name], times[baseline], strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds per measurement")
    parser.add_argument("--quick", action="store_true", help="two shapes, 5 rounds: a smoke run")
    parser.add_argument("--groups", default="plain,options,min,step",
                        help="comma-separated: plain, options, min, step, generate")
    parser.add_argument("--shapes", default="", help="indices into SHAPES to run, e.g. 0,3 (default: all)")
    parser.add_argument("--out", default="layers.json", help="file name under benchmarks/results/")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the step group: measure with 1)")
    parser.add_argument("--steps", type=int, default=100, help="step group: steps per round")
    parser.add_argument("--clock", choices=tuple(CLOCKS), default="wall",
                        help="step and generate groups: wall time, or this thread's CPU time (on a loaded machine)")
    args = parser.parse_args()
    setup_threads(args.threads)
    torch.manual_seed(0)
    shapes = SHAPES[:1] + SHAPES[-1:] if args.quick else SHAPES
    if args.shapes:
        shapes = [SHAPES[int(i)] for i in args.shapes.split(",")]
    rounds = 5 if args.quick else args.rounds
    groups = args.groups.split(",")
    rows: list[dict] = []
    for shape in shapes:
        B, T, I, H = shape
        if "plain" in groups:
            for kind in ("LSTM", "GRU", "RNN"):
                c = {f"torch.nn.{kind}": TORCH[kind](I, H, batch_first=True), f"rnnlab {kind}": OURS[kind](I, H)}
                rows += measure("plain", shape, c, f"torch.nn.{kind}", rounds, ("train", "infer"))
        if "options" in groups:
            c = {
                "torch.nn.LSTM": nn.LSTM(I, H, batch_first=True),
                "LSTM layer_norm": LSTM(I, H, layer_norm=True),
                "LSTM recurrent_dropout": LSTM(I, H, recurrent_dropout=0.25),
            }
            if shape == SHAPES[0]:
                c["LSTM layer_norm (loop)"] = LSTM(I, H, layer_norm=True, impl="loop")
            rows += measure("options", shape, c, "torch.nn.LSTM", rounds, ("train", "infer"))
        if "min" in groups and shape == SHAPES[-1]:
            c = {"torch.nn.LSTM": nn.LSTM(I, H, batch_first=True), "MinGRU": MinGRU(I, H), "MinLSTM": MinLSTM(I, H)}
            rows += measure("min", shape, c, "torch.nn.LSTM", rounds, ("train", "infer"))
        print(f"done {shape}", flush=True)
    if "step" in groups:
        rows += measure_streaming(rounds, args.steps, CLOCKS[args.clock])
    if "generate" in groups:
        rows += measure_generation(rounds, CLOCKS[args.clock])
    path = write_json(args.out, {"rounds": rounds, "clock": args.clock, "rows": rows})
    print_table(rows, ["group", "shape", "mode", "model", "ms", "torch_ms", "ratio"]
                + (["extra_us"] if "step" in groups or "generate" in groups else []))
    print(f"\nwritten {path}")


if __name__ == "__main__":
    main()
