"""``rnnlab inspect BUNDLE [--input TEXT|FILE] [--out report/]``: the parser and the command.

cli.py registers the subcommand with :func:`add_parser` and calls :func:`run` with the parsed options.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal, Optional

from jsonargparse import ArgumentParser

EPILOG = ("Example: rnnlab inspect runs/demo/bundle --input 'print(\"hi\") (x)' --signal inside_quotes "
          "'re:[0-9]+' --out report/   (open report/report.html)")


def add_parser(commands) -> None:
    """Add ``inspect`` to the ``rnnlab`` subcommands."""
    p = ArgumentParser(
        description="Look inside a bundle on one input: gradient flow through time (‖∂L/∂h_t‖, ‖∂h_T/∂h_t‖, "
                    "clipping), gates and their saturation, hidden and cell states, the units that track a signal, "
                    "attention and saliency. Writes PNGs and one self-contained report.html into --out. Sections "
                    "that do not apply to the bundle's model are left out with a note.",
        epilog=EPILOG, exit_on_error=False)
    p.add_argument("bundle", type=str, help="the model bundle: a folder written by 'rnnlab train'")
    p.add_argument("--input", type=Optional[str], default=None,
                   help="the text to inspect, or a UTF-8 file holding it; none = a built-in example for the task")
    p.add_argument("--out", type=str, default="report", help="the folder for report.html and the PNGs")
    p.add_argument("--sections", type=str, default="all",
                   help="all, or a comma-separated list of gradients, gates, states, units, attention, saliency; "
                        "a named section that does not apply to the model is an error")
    p.add_argument("--signal", type=str, nargs="+", default=None,
                   help="signals for the unit search (one or more): inside_quotes, line_position, bracket_depth, "
                        "inside_parens, or re:PATTERN; none = the four built-in ones")
    p.add_argument("--top_units", type=int, default=4, help="how many units to show per signal")
    p.add_argument("--max_length", type=int, default=300,
                   help="inspect at most this many tokens (longer inputs are cut, with a warning)")
    p.add_argument("--unknown", type=Literal["unk", "error"], default="unk",
                   help="characters or words the tokenizer never saw: unk (map to <unk>, with a warning) or error")
    p.add_argument("--max_units", type=int, default=64, help="heat maps show at most this many units per layer")
    p.add_argument("--reference", type=bool, default=True,
                   help="add the vanishing-gradient picture of untrained RNN/LSTM/GRU layers of the bundle's width")
    commands.add_subcommand("inspect", p, help="look inside a bundle on an input: gradients, gates, states, "
                                               "attention, saliency (HTML report)")


def read_input(value: Optional[str]) -> Optional[str]:
    """--input: a path to an existing file is read; anything else is the text itself."""
    if value is None:
        return None
    path = Path(value).expanduser()
    try:
        is_file = len(value) < 4096 and "\n" not in value and path.is_file()
    except OSError:
        is_file = False
    if is_file:
        from rnnlab.data.errors import read_text

        return read_text(str(path), what="--input file")
    return value


def run(ns) -> int:
    from rnnlab.inspect.report import DEFAULT_SIGNALS, write_report

    result = write_report(
        ns.bundle, read_input(ns.input), ns.out, sections=ns.sections, signals=ns.signal or DEFAULT_SIGNALS,
        top_units=ns.top_units, max_length=ns.max_length, unknown=ns.unknown, max_units=ns.max_units,
        reference=ns.reference,
    )
    for w in result.warnings:
        print(f"rnnlab: warning: {w}", file=sys.stderr)
    for n in result.notes:
        print(f"rnnlab: left out {n}", file=sys.stderr)
    print(f"report: {result.html}  ({len(result.images)} figures)")
    return 0
