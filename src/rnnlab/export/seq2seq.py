"""The two graphs of a Seq2Seq (translate): the encoder over the whole source, and one decoder step.

Decoding (greedy, beam search, sampling) stays in the runtime: call the encoder graph once, then the step
graph once per target token, feeding back the state (``hN``/``cN`` as ``h0``/``c0``, ``feedN`` as ``feed``)
and the chosen token as ``x``; ``memory``, ``keys`` and ``lengths`` stay the same (docs/export.md).
"""
from __future__ import annotations

import torch
from torch import nn

from rnnlab.nn.state import LSTMState

from .graphs import Seq2SeqDecoderStepGraph, Seq2SeqEncoderGraph


def seq2seq_specs(model: nn.Module) -> list:
    from .onnx_export import GraphSpec, _inputs, example_lengths

    c = model.config
    lstm, luong, attention = c.decoder.cell == "lstm", model.combine is not None, model.attention is not None
    E, H, L, V = model.encoder.output_size, c.decoder.hidden_size, c.decoder.num_layers, c.tgt_vocab_size
    tokens = model.inputs.embedding is not None
    st = f"float32 ({L}, B, {H})"
    A = "A"
    shapes = {
        "x": "int64 (B, S) source token ids" if tokens else f"float32 (B, S, {model.inputs.output_size})",
        "lengths": "int64 (B,) source lengths", "memory": f"float32 (B, S, {E})", "keys": f"float32 (B, S, {A})",
        "h0": st, "c0": st, "hN": st, "cN": st, "feed": f"float32 (B, {H})", "feedN": f"float32 (B, {H})",
        "y": f"float32 (B, {V}) next-token logits", "attention": "float32 (B, S)",
    }
    enc_out = ("memory", "h0") + (("c0",) if lstm else ()) + (("keys",) if attention else ()) + (
        ("feed",) if luong else ())

    def enc_example(B, T, *, seed, zero_state):
        g = torch.Generator().manual_seed(seed)
        return (_inputs(model, (B, T), g), example_lengths(B, T, g))

    @torch.no_grad()
    def enc_reference(args):
        state = model.encode(*args)
        h = state["h"]
        out = [state["memory"], *((h.h, h.c) if isinstance(h, LSTMState) else (h,))]
        return out + ([state["keys"]] if attention else []) + ([state["feed"]] if luong else [])

    def step_example(B, T, *, seed, zero_state):
        g = torch.Generator().manual_seed(seed)
        x = torch.randint(0, V, (B,), generator=g)
        lengths = example_lengths(B, T, g) if attention else None
        memory = torch.randn(B, T, E, generator=g) if attention else None
        keys = model.attention.precompute(memory).detach() if attention else None
        h0 = 0.5 * torch.randn(L, B, H, generator=g)
        c0 = 0.5 * torch.randn(L, B, H, generator=g) if lstm else None
        feed = 0.5 * torch.randn(B, H, generator=g) if luong else None
        return (x, lengths, memory, keys, h0, c0, feed)

    @torch.no_grad()
    def step_reference(args):
        x, lengths, memory, keys, h0, c0, feed = args
        mask = None
        if memory is not None:
            mask = torch.arange(memory.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)
        state = {"h": LSTMState(h0, c0) if lstm else h0, "memory": memory, "mask": mask, "keys": keys, "feed": feed}
        logits, new, weights = model.decode_step(x, state)
        h = new["h"]
        out = [logits, *((h.h, h.c) if lstm else (h,))]
        return out + ([new["feed"]] if luong else []) + ([weights] if attention else [])

    step_out = ("y", "hN") + (("cN",) if lstm else ()) + (("feedN",) if luong else ()) + (
        ("attention",) if attention else ())
    batch, time = {0: "batch"}, {0: "batch", 1: "time"}
    return [
        GraphSpec("sequence", Seq2SeqEncoderGraph(model).eval(), ("x", "lengths"), enc_out, (time, batch),
                  enc_example, enc_reference, shapes),
        GraphSpec("step", Seq2SeqDecoderStepGraph(model).eval(),
                  ("x", "lengths", "memory", "keys", "h0", "c0", "feed"), step_out,
                  (batch, batch, time, time, {1: "batch"}, {1: "batch"}, batch), step_example, step_reference, shapes),
    ]
