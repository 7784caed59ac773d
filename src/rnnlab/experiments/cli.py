"""``rnnlab experiment long-range|clipping``: the parsers and the commands (cli.py registers them)."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

from jsonargparse import ArgumentParser

_LONG_RANGE = ("problems", "lengths", "models", "parameters", "steps", "batch_size", "lr", "clip", "eval_every",
               "test_size", "time_limit", "seed")
_CLIPPING = ("length", "hidden_size", "gain", "steps", "batch_size", "lr", "max_norm", "max_value", "seed")


def _field_help(cls: type) -> dict[str, str]:
    """Each field's docstring (jsonargparse's reading of the class), for --help."""
    import inspect
    import re

    source = inspect.getsource(cls)
    found = {}
    for m in re.finditer(r"^\s{4}(\w+):[^\n]*\n\s{4}\"\"\"(.*?)\"\"\"", source, re.M | re.S):
        found[m.group(1)] = " ".join(m.group(2).split())
    return found


def _add_fields(p: ArgumentParser, cls: type, names: tuple[str, ...], defaults) -> None:
    """Options for ``names`` of dataclass ``cls``, each defaulting to None (= the chosen grid's value)."""
    helps = _field_help(cls)
    types = {f.name: f.type for f in dataclasses.fields(cls)}
    for name in names:
        kind = {"tuple[str, ...]": Optional[list[str]], "tuple[int, ...]": Optional[list[int]], "int": Optional[int],
                "float": Optional[float]}[str(types[name])]
        default = getattr(defaults, name)
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        p.add_argument(f"--{name}", type=kind, default=None, help=f"{helps.get(name, name)} (default: {shown})")


def add_to(commands, subparser) -> None:
    """Register ``experiment`` under ``commands``; ``subparser(description)`` makes a parser the way cli.py does."""
    from .clipping import ClippingConfig
    from .long_range import QUICK, LongRangeConfig

    p = subparser("Experiments that check what the literature says about recurrent networks. Each writes a "
                  "table, a JSON file and a plot to --out.")
    commands.add_subcommand("experiment", p,
                            help="rerun the long-range and gradient-clipping experiments (tables, JSON, plots)")
    sub = p.add_subcommands(dest="experiment", required=True)
    lr = subparser("Adding, copy and selective copy at growing lengths: RNN, IRNN, LSTM, GRU, minGRU, minLSTM, the "
                   "window model, the CNN and the Transformer at one parameter budget. The full grid takes hours on "
                   "2 cores; --quick (about 8 minutes) gives the same qualitative picture. Lists are given as "
                   "[a,b] or repeated options, e.g. --lengths [50,100].")
    lr.add_argument("--quick", type=bool, default=False,
                    help=f"the quick grid: lengths {QUICK.lengths}, budget {QUICK.parameters}, at most {QUICK.steps} "
                         f"steps or {QUICK.time_limit:g} s per run; options below override it")
    _add_fields(lr, LongRangeConfig, _LONG_RANGE, LongRangeConfig())
    lr.add_argument("--out", type=str, default="runs/long-range", help="the folder for results.json, table.txt "
                                                                       "and long_range.png")
    sub.add_subcommand("long-range", lr, help="which models remember across long gaps (adding, copy, selective copy)")
    cl = subparser("A plain ReLU RNN on the adding problem with no clipping, clipping by norm and clipping by value, "
                   "from the same weights on the same batches: loss curves and gradient norms side by side.")
    _add_fields(cl, ClippingConfig, _CLIPPING, ClippingConfig())
    cl.add_argument("--out", type=str, default="runs/clipping", help="the folder for clipping.json/.txt/.png")
    sub.add_subcommand("clipping", cl, help="exploding gradients with and without gradient clipping")


def _overrides(ns, names: tuple[str, ...]) -> dict:
    values = {}
    for name in names:
        value = getattr(ns, name, None)
        if value is not None:
            values[name] = tuple(value) if isinstance(value, list) else value
    return values


def run(ns) -> int:
    """Run the experiment ``ns.experiment`` names."""
    if ns.experiment == "long-range":
        return _long_range(ns["long-range"])
    return _clipping(ns.clipping)


def _long_range(ns) -> int:
    from .long_range import QUICK, LongRangeConfig, check_claims, run_grid, table, write_results

    base = QUICK if ns.quick else LongRangeConfig()
    config = dataclasses.replace(base, **_overrides(ns, _LONG_RANGE))
    runs = len(config.problems) * len(config.lengths) * len(config.models)
    print(f"long-range: {runs} runs ({', '.join(config.problems)} at T = {', '.join(map(str, config.lengths))}; "
          f"{len(config.models)} models at ~{config.parameters:,} parameters)", flush=True)

    def show(r) -> None:
        at = f"solved at step {r.steps_to_solve}" if r.solved else f"not solved in {r.steps} steps"
        print(f"  {r.problem:<15} T={r.length:<5} {r.model:<12} {r.metric} {r.score:.3f}  {at}  ({r.seconds:.1f} s)",
              flush=True)

    results = run_grid(config, on_result=show)
    out = Path(ns.out)
    write_results(results, config, out)
    print("\n" + table(results) + "\n")
    for c in check_claims(results):
        verdict = {True: "holds", False: "does NOT hold", None: "not tested"}[c.holds]
        print(f"- {c.claim}: {verdict}\n    {c.evidence}")
    print(f"\nwritten: {out / 'results.json'}, {out / 'table.txt'}, {out / 'long_range.png'}")
    return 0


def _clipping(ns) -> int:
    from .clipping import ClippingConfig, run, summary, write_results

    config = dataclasses.replace(ClippingConfig(), **_overrides(ns, _CLIPPING))
    print(f"clipping: a ReLU RNN (H={config.hidden_size}, recurrent matrix {config.gain:g} x identity) on the adding "
          f"problem, T={config.length}, SGD lr {config.lr:g}, {config.steps} steps", flush=True)
    runs = run(config, on_run=lambda r: print(f"  {r.mode:<6} done in {r.seconds:.1f} s", flush=True))
    out = Path(ns.out)
    write_results(runs, config, out)
    print("\n" + summary(runs))
    print(f"\nwritten: {out / 'clipping.json'}, {out / 'clipping.png'}")
    return 0
