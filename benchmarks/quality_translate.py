"""Translation quality on German -> English word pairs (run by hand): character seq2seq with and without
attention, and the Transformer baseline, each trained for the same wall-clock budget.

Data: ~/.cache/rnnlab-data/translate/deu_eng.{train,valid,test}.tsv (German<TAB>English, 83k/10k/10k lines;
``rnnlab datasets prepare translate`` writes them). Every variant is ``rnnlab train translate``
with configs/translate-deu_eng.yaml's settings and a different ``model``; the test pairs are decoded greedily
and scored with sacrebleu (BLEU, chrF) and exact match. Wall time covers training (max_time), decoding the
validation and test sets, and saving.

    python benchmarks/quality_translate.py [--max_time 180] [--threads 2] [--variants rnn-attention rnn transformer]
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table, setup_threads, write_json  # noqa: E402
from rnnlab.structures import DecoderConfig, EncoderConfig  # noqa: E402
from rnnlab.tasks import translate  # noqa: E402
from rnnlab.tasks.translate import TransformerOptions, TranslateConfig, TranslateModelConfig  # noqa: E402
from rnnlab.training import TrainerConfig, load_bundle  # noqa: E402

DATA = "~/.cache/rnnlab-data/translate/deu_eng"
RNN = TranslateModelConfig(embedding_size=32, encoder=EncoderConfig(kind="lstm", hidden_size=64, bidirectional=True),
                           decoder=DecoderConfig(hidden_size=128))
VARIANTS = {
    "rnn-attention": replace(RNN, attention="bahdanau"),
    "rnn": replace(RNN, attention="none", context="linear"),
    "transformer": replace(RNN, kind="transformer", transformer=TransformerOptions(hidden_size=128, num_layers=2,
                                                                                   num_heads=4)),
}


def config_for(model: TranslateModelConfig, max_time: float, run_dir: str) -> TranslateConfig:
    """configs/translate-deu_eng.yaml with this model and time budget."""
    return TranslateConfig(
        data=f"{DATA}.train.tsv", valid_data=f"{DATA}.valid.tsv", test_data=f"{DATA}.test.tsv",
        source_tokenizer="char", target_tokenizer="char", max_source_length=40, max_target_length=40,
        batch_size=64, model=model,
        trainer=TrainerConfig(optimizer="adamw", lr=3e-3, warmup_steps=100, clip_norm=1.0, max_epochs=0,
                              max_time=max_time, eval_every=500, log_every=200, progress=False, curves=False,
                              run_dir=run_dir),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max_time", type=float, default=180.0, help="training seconds per variant")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (1 on a machine that others load)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    setup_threads(args.threads)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("rnnlab").setLevel(logging.INFO)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.variants:
            config = config_for(VARIANTS[name], args.max_time, f"{tmp}/{name}")
            print(f"--- {name}", flush=True)
            t0 = time.perf_counter()
            path = translate.train(config)
            wall = time.perf_counter() - t0
            m = load_bundle(path).metrics
            rows.append({
                "variant": name, "params": sum(p.numel() for p in load_bundle(path).model.parameters()),
                "steps": m["step"], "train_s": round(m["elapsed_s"], 1), "wall_s": round(wall, 1),
                "valid_loss": round(m["valid_loss"], 4), "test_exact_match": round(m["test_exact_match"], 2),
                "test_chrf": round(m["test_chrf"], 2), "test_bleu": round(m["test_bleu"], 2),
                "test_pairs": m["test_pairs"],
            })
            print_table(rows[-1:], list(rows[-1]))
    path = write_json("quality_translate.json", {"max_time": args.max_time, "data": DATA, "results": rows})
    print()
    print_table(rows, list(rows[0]))
    print(f"\nwritten: {path}")


if __name__ == "__main__":
    main()
