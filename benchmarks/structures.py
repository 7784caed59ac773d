"""Seq2seq with each attention type against a Transformer of similar size: tokens per second on the CPU.

Run by hand:  .venv/bin/python benchmarks/structures.py [--rounds 7]

Synthetic batches (random tokens: speed does not depend on the data) of B=32 sentence pairs, source and
target length 20, vocabularies of 1,000. Training: forward + backward + Adam step, target tokens per
second. Decoding: greedy and beam search (width 4) for 20 steps with no end token, generated tokens per
second (a beam's token counts once per sentence, not once per beam). Contenders run interleaved in one
process; the table gives medians. Writes benchmarks/results/structures.json.
"""
from __future__ import annotations

import argparse
import statistics

import torch

from common import interleaved, print_table, setup_threads, write_json
from rnnlab.structures.decoders import DecoderConfig
from rnnlab.structures.encoders import EncoderConfig
from rnnlab.structures.seq2seq import Seq2Seq, Seq2SeqConfig
from rnnlab.structures.transformer_seq2seq import TransformerSeq2Seq, TransformerSeq2SeqConfig

B, S, T, V = 32, 20, 20, 1000


def models() -> dict[str, torch.nn.Module]:
    out = {}
    for attention in ("none", "bahdanau", "luong-dot", "luong-general"):
        out[f"seq2seq {attention}"] = Seq2Seq(Seq2SeqConfig(
            tgt_vocab_size=V, src_vocab_size=V, embedding_size=128, decoder=DecoderConfig(hidden_size=256),
            encoder=EncoderConfig(kind="lstm", hidden_size=128, bidirectional=True), attention=attention,
        ))
    out["transformer"] = TransformerSeq2Seq(TransformerSeq2SeqConfig(
        # 1.90M parameters, as seq2seq bahdanau (1.89M)
        tgt_vocab_size=V, src_vocab_size=V, embedding_size=128, hidden_size=160, num_layers=2, num_heads=4,
    ))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    setup_threads(2)
    torch.manual_seed(0)
    src = torch.randint(3, V, (B, S))
    tgt = torch.randint(3, V, (B, T))
    batch = {"x": src, "y": tgt}
    ms = models()
    opts = {name: torch.optim.Adam(m.parameters(), lr=1e-4) for name, m in ms.items()}

    def train(name):
        def run():
            m = ms[name].train()
            loss = m.loss(batch)
            opts[name].zero_grad()
            loss.backward()
            opts[name].step()
        return run

    def decode(name, method):
        def run():
            ms[name].generate(src, max_new_tokens=T, method=method, end_token=None, beam_width=4)
        return run

    rows = []
    modes = (("train", train), ("greedy", lambda n: decode(n, "greedy")), ("beam4", lambda n: decode(n, "beam")))
    for mode, make in modes:
        times = interleaved({name: make(name) for name in ms}, rounds=args.rounds, warmup=1)
        for name, ts in times.items():
            sec = statistics.median(ts)
            rows.append({"model": name, "mode": mode, "params_M": sum(p.numel() for p in ms[name].parameters()) / 1e6,
                         "ms": 1e3 * sec, "tokens_per_s": B * T / sec})
        print(f"done {mode}", flush=True)
    path = write_json("structures.json",
                      {"batch": B, "src_len": S, "tgt_len": T, "vocab": V, "rounds": args.rounds, "rows": rows})
    print_table(rows, ["model", "mode", "params_M", "ms", "tokens_per_s"])
    print(f"\nwritten {path}")


if __name__ == "__main__":
    main()
