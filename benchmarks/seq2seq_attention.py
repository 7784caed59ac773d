"""Attention seq2seq training speed against the attention-free model of the same sizes (issue 12).

Run by hand:  .venv/bin/python benchmarks/seq2seq_attention.py [--threads 1] [--rounds 7] [--shapes wide dates]
              [--clock wall|cpu] [--profile] [--loops [--loop-shapes B8 deu_eng ...]]

One training step, forward + backward with teacher forcing (ratio 1), on synthetic batches (random tokens:
speed does not depend on the data). For every shape, in one process, interleaved, one call of each per round:

  none                 the attention-free Seq2Seq (its decoder is one call of torch's fused LSTM kernel)
  <attention> before   the step loop, Seq2Seq._forward_steps: decode_step T times (the code before issue 12;
                       its Luong scores have since moved to nn.attention's row-vector bmm)
  <attention> torch    teacher_forcing.py with the fused loop of torch ops (impl="torch": the hand-written
                       backward, ~70 small torch ops per decoder step)
  <attention> after    Seq2Seq.forward: teacher_forcing.py with the fused loop on numba kernels (impl="auto":
                       structures/fused_attention_numba.py)

The table gives, per contender, the median ms per step, target tokens/s, and the median over rounds of the
per-round ratio tokens/s(contender) / tokens/s(none); the goal is after ≥ 0.6. ``--profile`` adds, per
contender, where the time of one step goes (torch.profiler's self CPU time grouped: matrix products, the
element-wise ops, softmax, the loss, torch's fused RNN kernels, the numba decoder loop (the self time of its
autograd Function, forward and backward: the numba kernels, with the per-step products where the whole loop runs
in numba, and the Python inside), the rest; "overhead" is the wall time that no op accounts for: Python, autograd's
bookkeeping, the dispatcher; the Python loop inside the torch fused decoder's autograd Function counts as that
Function's own time, under "element-wise and other"; "ops per step" counts the
profiler's events, nested ones included). The profiler times wall time per op: on a loaded machine read its
shares, not its milliseconds. Writes benchmarks/results/seq2seq_attention.json.

Measured with the per-step products and the weight gradients on the micro-kernel (_ukernel.matmul_packed; before:
the plain numba loop fused_lstm._matmul and oneDNN's weight gradients; --clock cpu --skip-before, the two trees in
alternating processes on a loaded machine: after 4 runs of 9-15 rounds, before 3 of 9-11, ~60-100 s each; the
median of the runs' ratios): tokens/s ÷ none's, before -> after: wide bahdanau 0.61 -> 0.63, luong-dot 0.85 ->
0.89, luong-general 0.83 -> 0.88; dates 0.71 -> 0.75, 0.76 -> 0.80, 0.74 -> 0.74; deu_eng 0.67 -> 0.70,
0.69 -> 0.72, 0.63 -> 0.69. The decoder loop's Function alone (--loops, 9 rounds, 15 s), whole loop, ms, before
-> after: B=8 2.4 -> 1.8 | 3.3 -> 1.9 (Bahdanau | Luong), deu_eng 11.1 -> 8.6 | 10.1 -> 9.3, B=256 38 -> 33 |
45 -> 34, wide 63 -> 47 | 66 -> 53. Wide Bahdanau stays the closest to 0.6: its head over [h; ĉ] (see below)
runs on MKL's sgemm at ~34-43 multiply-adds per ns on this CPU (the micro-kernel: 94, oneDNN 63-94).
Earlier, with the numba loop (2 shared cores, load average 2-4, --clock cpu --rounds 11 --skip-before --profile,
213 s): tokens/s ÷ none's, torch loop -> numba loop: wide bahdanau 0.55 -> 0.61, luong-dot 0.81 -> 0.85,
luong-general 0.80 -> 0.84; dates 0.56 -> 0.66, 0.63 -> 0.69, 0.58 -> 0.66; deu_eng 0.53 -> 0.62, 0.54 -> 0.64,
0.50 -> 0.60 (another run, --rounds 9 without --profile, 80 s: wide 0.60, 0.81, 0.81; dates 0.70, 0.73, 0.63;
deu_eng 0.66, 0.74, 0.67). Wide Bahdanau stays near 0.6 because of its head: over 6,000 words, [h; ĉ] (512 wide)
costs ~150 ms per step more than none's h (256 wide), which caps it at ~0.70 before any attention work; its numba
loop is ~55 ms, of which the per-step products are ~21 ms and the end-of-pass weight gradients ~12 ms.
Earlier (the torch loop against the step loop; load average 7-13, --clock cpu --rounds 9 --profile, 513 s):
tokens/s ÷ none's, before -> after: wide bahdanau 0.41 -> 0.54, luong-dot 0.55 -> 0.81, luong-general 0.54 -> 0.78;
dates 0.44 -> 0.56, 0.50 -> 0.65, 0.48 -> 0.60; deu_eng 0.39 -> 0.50, 0.43 -> 0.55, 0.40 -> 0.50. At "wide"
the head over 6,000 words is 68% of none's step, and Bahdanau's head reads [h; ĉ] (512 wide, not 256): 431 ms
against 263 ms per step (fwd+bwd+loss), which alone caps Bahdanau at 0.70 there.

Shapes: "wide" is a word-level translation model (B=64, source and target length 25, embedding 256, encoder
bidirectional LSTM 2×128, decoder LSTM 256, vocabularies 6,000); "dates" and "deu_eng" are the translate
task's presets (configs/translate.yaml, configs/translate-deu_eng.yaml: embedding 32, encoder 2×64, decoder
128, characters) at their typical padded batch lengths.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from common import CLOCKS, interleaved, print_table, setup_threads, write_json
from rnnlab.structures.decoders import DecoderConfig
from rnnlab.structures.encoders import EncoderConfig
from rnnlab.structures.seq2seq import Seq2Seq, Seq2SeqConfig
from rnnlab.structures.teacher_forcing import teacher_forced

ATTENTIONS = ("bahdanau", "luong-dot", "luong-general")
# name: (B, S, T, source vocab, target vocab, embedding, encoder hidden per direction, decoder hidden)
SHAPES = {
    "wide": (64, 25, 25, 6000, 6000, 256, 128, 256),
    "dates": (64, 36, 11, 50, 16, 32, 64, 128),
    "deu_eng": (64, 16, 12, 70, 65, 32, 64, 128),
}
CATEGORIES = {  # torch.profiler op name -> what it is
    "products": ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::mv", "aten::linear",
                 "mkldnn::_linear_pointwise"),
    "softmax": ("aten::_softmax", "aten::_softmax_backward_data"),
    "loss": ("aten::_log_softmax", "aten::_log_softmax_backward_data", "aten::nll_loss_forward",
             "aten::nll_loss_backward"),
    "fused rnn": ("aten::mkldnn_rnn_layer", "aten::mkldnn_rnn_layer_backward"),
    "numba decoder loop": ("BahdanauNumba", "BahdanauNumbaBackward", "LuongNumba", "LuongNumbaBackward"),
}


def build(shape: str, attention: str) -> Seq2Seq:
    B, S, T, Vs, Vt, emb, enc, dec = SHAPES[shape]
    torch.manual_seed(0)
    return Seq2Seq(Seq2SeqConfig(
        tgt_vocab_size=Vt, src_vocab_size=Vs, embedding_size=emb, attention=attention,
        encoder=EncoderConfig(kind="lstm", hidden_size=enc, bidirectional=True), decoder=DecoderConfig(hidden_size=dec),
    )).train()


def batch_for(shape: str) -> dict:
    B, S, T, Vs, Vt, *_ = SHAPES[shape]
    g = torch.Generator().manual_seed(1)
    lengths = torch.randint(S // 2, S + 1, (B,), generator=g)
    lengths[0] = S
    return {"x": torch.randint(3, Vs, (B, S), generator=g), "lengths": lengths,
            "y": torch.randint(3, Vt, (B, T), generator=g)}


def step_fn(model: Seq2Seq, batch: dict, *, before: bool = False, impl: str = "auto"):
    """One training step (forward + backward, no optimizer): the current path (``impl``: how its fused loop
    runs), or with ``before`` the step loop."""
    def run():
        model.zero_grad(set_to_none=True)
        if before or impl != "auto":
            state = model.encode(batch["x"], batch["lengths"])
            if before:
                logits = model._forward_steps(batch["y"], state, force=False).logits
            else:
                logits, _ = teacher_forced(model, batch["y"], state, impl=impl)
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch["y"].flatten())
        else:
            loss = model.loss(batch)
        loss.backward()
    return run


def profile_split(fn, repeats: int = 3) -> dict:
    """ms per step by category of op, and the wall time no op accounts for."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        for _ in range(repeats):
            fn()
        wall = (time.perf_counter() - t0) / repeats
    split = {name: 0.0 for name in (*CATEGORIES, "element-wise and other")}
    for event in prof.key_averages():
        cat = next((c for c, names in CATEGORIES.items() if event.key in names), "element-wise and other")
        split[cat] += event.self_cpu_time_total / 1e3 / repeats
    # the profiler's own cost inflates both; the overhead is what the ops' self times leave of the wall time
    split["overhead"] = max(0.0, 1e3 * wall - sum(split.values()))
    split["ops per step"] = sum(e.count for e in prof.key_averages()) / repeats
    return {k: round(v, 2) for k, v in split.items()}


# the decoder loop alone (--loops): (B, T, S, H) with A = E = H, as whole_loop's docstring
LOOP_SHAPES = {"B8": (8, 12, 16, 128), "deu_eng": (64, 12, 16, 128), "B256": (256, 12, 16, 128),
               "wide": (64, 25, 25, 256), "B1024": (1024, 12, 16, 128), "wide-B256": (256, 25, 25, 256),
               "H512": (64, 25, 25, 512), "H512-B128": (128, 25, 25, 512)}
LOOP_DEFAULT = ("B8", "deu_eng", "B256", "wide")
LOOP_IMPLS = ("numba", "numba-step", "torch")


def loop_fn(attention: str, shape: str, impl: str):
    """Forward + backward of the fused decoder loop's Function alone (random inputs, a quarter of the rows padded
    past S/2), as fused_attention_decoder.bahdanau/luong with ``impl``."""
    from rnnlab.structures import fused_attention_decoder as fused

    B, T, S, H = LOOP_SHAPES[shape]
    G, A, E = 4 * H, H, H
    g = torch.Generator().manual_seed(0)
    r = lambda *size: (0.1 * torch.randn(*size, generator=g)).requires_grad_()  # noqa: E731
    additive = torch.zeros(B, S)
    additive[: B // 4, S // 2:] = float("-inf")
    if attention == "bahdanau":
        args = (r(B, T, G), r(B, H), r(B, H), r(G, H), r(G), r(A, H), r(G, E), r(A), r(B, S, A), r(B, S, E))
        fn = fused.bahdanau
    else:
        args = (r(B, T, G), r(B, H), r(B, H), r(G, H), r(G), r(G, H), r(H, H), r(H, E), r(H), r(B, S, H),
                r(B, S, E))
        fn = fused.luong
    grads = None

    def run():
        nonlocal grads
        outputs = fn(*args, additive, impl=impl)
        if grads is None:
            grads = [torch.randn(o.shape, generator=g) for o in outputs]
        torch.autograd.backward(outputs, grads)
        for a in args:
            a.grad = None
    return run


def loops(args, clock) -> None:
    """--loops: the Function alone at LOOP_SHAPES, ms per forward + backward, and the whole numba loop's time over
    the per-step one's (median of per-round ratios: < 1 where the whole loop is faster)."""
    rows, started = [], time.perf_counter()
    for shape in args.loop_shapes:
        B, T, S, H = LOOP_SHAPES[shape]
        for attention in ("bahdanau", "luong"):
            fns = {impl: loop_fn(attention, shape, impl) for impl in LOOP_IMPLS}
            times = interleaved(fns, rounds=args.rounds, warmup=1, clock=clock)
            row = {"shape": shape, "attention": attention, "macs": B * H * (4 * H + H)}
            for impl, ts in times.items():
                row[f"{impl} ms"] = 1e3 * statistics.median(ts)
            row["whole / step"] = statistics.median(w / s for w, s in zip(times["numba"], times["numba-step"],
                                                                         strict=True))
            rows.append(row)
            print(f"done {shape} {attention}", flush=True)
    elapsed = time.perf_counter() - started
    path = write_json("seq2seq_attention_loops.json", {
        "shapes": {s: dict(zip(("B", "T", "S", "H"), LOOP_SHAPES[s], strict=True)) for s in args.loop_shapes},
        "rounds": args.rounds, "threads": args.threads, "clock": args.clock, "seconds": round(elapsed, 1),
        "rows": rows})
    print_table(rows, list(rows[0]))
    print(f"\n{elapsed:.0f} s; written {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--clock", choices=tuple(CLOCKS), default="wall",
                        help="cpu: this thread's CPU time (time.thread_time), for a machine shared with other jobs; "
                             "one thread only")
    parser.add_argument("--profile", action="store_true", help="also split one step's time by kind of op")
    parser.add_argument("--skip-before", action="store_true", help="leave out the step loop (the slowest contender)")
    parser.add_argument("--loops", action="store_true",
                        help="time the decoder loop's Function alone instead (whole numba loop / per step / torch), "
                             "at B = 8, 64, 256 and the wide shape: the numbers behind whole_loop's rule")
    parser.add_argument("--loop-shapes", nargs="+", default=list(LOOP_DEFAULT), choices=list(LOOP_SHAPES),
                        help="with --loops: (B, T, S, H) = " + ", ".join(f"{k} {v}" for k, v in LOOP_SHAPES.items()))
    args = parser.parse_args()
    if args.clock == "cpu" and args.threads != 1:
        parser.error("--clock cpu counts this thread only: use it with --threads 1")
    setup_threads(args.threads)
    clock = CLOCKS[args.clock]
    if args.loops:
        loops(args, clock)
        return
    rows, profiles = [], {}
    started = time.perf_counter()
    for shape in args.shapes:
        batch = batch_for(shape)
        B, S, T = SHAPES[shape][:3]
        fns = {"none": step_fn(build(shape, "none"), batch, before=False)}
        for attention in ATTENTIONS:
            model = build(shape, attention)
            if not args.skip_before:
                fns[f"{attention} before"] = step_fn(model, batch, before=True)
            fns[f"{attention} torch"] = step_fn(model, batch, impl="torch")
            fns[f"{attention} after"] = step_fn(model, batch)
        times = interleaved(fns, rounds=args.rounds, warmup=1, clock=clock)
        for name, ts in times.items():
            sec = statistics.median(ts)
            ratio = statistics.median(n / t for n, t in zip(times["none"], ts, strict=True))
            rows.append({"shape": shape, "model": name, "ms": 1e3 * sec, "tokens_per_s": B * T / sec,
                         "vs_none": ratio})
        if args.profile:
            profiles[shape] = {name: profile_split(fn) for name, fn in fns.items()}
        print(f"done {shape}", flush=True)
    elapsed = time.perf_counter() - started
    path = write_json("seq2seq_attention.json", {
        "shapes": {s: dict(zip(("B", "S", "T", "src_vocab", "tgt_vocab", "embedding", "encoder_hidden",
                                "decoder_hidden"), SHAPES[s], strict=True)) for s in args.shapes},
        "rounds": args.rounds, "threads": args.threads, "clock": args.clock, "seconds": round(elapsed, 1), "rows": rows,
        "profile_ms_per_step": profiles,
    })
    print_table(rows, ["shape", "model", "ms", "tokens_per_s", "vs_none"])
    for shape, split in profiles.items():
        print(f"\n{shape}: ms per step by kind of op (torch.profiler self CPU time; overhead = wall - ops)")
        cols = list(next(iter(split.values())))
        print_table([{"model": name, **s} for name, s in split.items()], ["model", *cols])
    print(f"\n{elapsed:.0f} s; written {path}")


if __name__ == "__main__":
    main()
