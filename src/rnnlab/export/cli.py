"""``rnnlab export BUNDLE --format onnx [--out model.onnx]``: the parser and the command.

The parser is built here and registered by :mod:`rnnlab.cli`; onnx and onnxruntime are imported only when
the command runs, so ``rnnlab --help`` works without the ``export`` extra.
"""
from __future__ import annotations

from typing import Optional

FORMATS = ("onnx",)

DESCRIPTION = (
    "Export a bundle for another runtime. --format onnx writes two graphs: the whole sequence (x, lengths, h0[, c0] "
    "-> y, hN[, cN]) and one time step with the state as explicit inputs and outputs (x, h0[, c0] -> y, hN[, cN]), "
    "for an app that streams one input at a time; batch and length are dynamic. Both are checked against PyTorch "
    "in onnxruntime. Exports textgen, classify, tag and translate (the encoder and one decoder step) bundles with a "
    "recurrent encoder (docs/export.md)."
)


def add_parser(commands, subparser) -> None:
    """Register ``export`` on ``commands`` (jsonargparse subcommands); ``subparser(description, epilog)``."""
    p = subparser(DESCRIPTION, "Example: rnnlab export runs/textgen/bundle --out textgen.onnx  (also writes "
                               "textgen.step.onnx and textgen.json)")
    p.add_argument("bundle", type=str, help="the model bundle: a folder written by 'rnnlab train'")
    p.add_argument("--format", type=str, default="onnx", help="the format to write: onnx")
    p.add_argument("--out", type=Optional[str], default=None,
                   help="the sequence graph's file (.onnx); the step graph goes beside it as NAME.step.onnx and the "
                        "description as NAME.json; null = BUNDLE/model.onnx")
    p.add_argument("--step", type=bool, default=True, help="also write the single-step graph (where the model has one)")
    p.add_argument("--check", type=bool, default=True,
                   help="run both graphs in onnxruntime and compare them with PyTorch (max |difference| <= 1e-4)")
    commands.add_subcommand("export", p, help="export a bundle to ONNX: a sequence graph and a streaming step graph")


def cmd_export(ns) -> int:
    """Run ``rnnlab export``; print what was written. Errors propagate to :func:`rnnlab.cli.main`."""
    from pathlib import Path

    if ns.format not in FORMATS:
        raise ValueError(f"unknown --format {ns.format!r}: rnnlab export writes {', '.join(FORMATS)}")
    from .onnx_export import require_onnx, to_onnx

    require_onnx()
    out = Path(ns.out) if ns.out is not None else Path(ns.bundle) / "model.onnx"
    result = to_onnx(ns.bundle, out, step=ns.step, check=ns.check)
    print(f"sequence graph: {result.sequence}")
    print(f"step graph:     {result.step if result.step is not None else 'none: ' + str(result.step_skipped)}")
    print(f"description:    {result.metadata}")
    if result.max_error:
        worst = max(e for graph in result.max_error.values() for e in graph.values())
        print(f"onnxruntime vs PyTorch: max |difference| {worst:.1e} over {', '.join(result.max_error)}")
    return 0
