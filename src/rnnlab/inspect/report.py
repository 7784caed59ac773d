"""``rnnlab inspect``'s report: every figure that applies to a bundle, as PNGs and one self-contained HTML page.

The page embeds its images as base64 ``data:`` URIs and holds its CSS inline: no network, no script, so it opens
from a mail attachment or an air-gapped machine. Sections that do not apply to a model (gates of a CNN, attention
of a model without it) are left out with a note saying why, unless they were asked for by name: then it is an
error (a ValueError naming the section and the encoder).
"""
from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import torch

from . import plots
from .attention import attention_maps
from .gates import saturation
from .gradients import clipping_effect, compare_gradient_flow, gradient_flow, jacobian_norms
from .inputs import Inspected, Unknown, load_inspected
from .saliency import saliency
from .trace import encoder_kind, recurrent_layers, trace
from .units import unit_search

SECTIONS = ("gradients", "gates", "states", "units", "attention", "saliency")
DEFAULT_SIGNALS = ("inside_quotes", "line_position", "bracket_depth", "inside_parens")


@dataclass
class ReportResult:
    """What :func:`write_report` wrote."""

    html: Path
    images: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    """Stated changes to the input (truncation, unknown characters)."""
    notes: list = field(default_factory=list)
    """Sections left out, and why."""


def _sections(sections) -> tuple[list, bool]:
    if sections is None or sections == "all" or list(sections) == ["all"]:
        return list(SECTIONS), False
    names = [s.strip() for item in ([sections] if isinstance(sections, str) else sections) for s in item.split(",")]
    unknown = [s for s in names if s not in SECTIONS]
    if unknown:
        raise ValueError(f"unknown --sections {', '.join(unknown)}: choose from all, {', '.join(SECTIONS)}")
    return names, True


def write_report(bundle: Union[str, Path], text: Optional[str], out: Union[str, Path] = "report", *,
                 sections=None, signals=DEFAULT_SIGNALS, top_units: int = 4, max_length: int = 300,
                 unknown: Unknown = "unk", max_units: int = 64, reference: bool = True) -> ReportResult:
    """Inspect ``bundle`` on ``text`` (None: the task's default input) and write ``out/report.html`` and its PNGs.

    ``sections``: None/"all", or names from :data:`SECTIONS` (a named section that does not apply is an error).
    ``signals``: built-in signal names or ``re:PATTERN`` for the unit search. ``reference``: add the vanishing
    picture of untrained RNN/LSTM/GRU layers of the bundle's width on the same input.
    """
    chosen, explicit = _sections(sections)
    if not isinstance(top_units, int) or top_units < 1:
        raise ValueError(f"--top_units must be a positive integer, got {top_units!r}")
    item = load_inspected(bundle, text, max_length=max_length, unknown=unknown)
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file: give a folder for the report")
    out.mkdir(parents=True, exist_ok=True)
    result = ReportResult(out / "report.html", warnings=list(item.warnings))
    body: list = []
    recurrent = bool(recurrent_layers(item.model))
    kind = encoder_kind(item.model)

    def skip(name: str, why: str) -> None:
        if explicit:
            raise ValueError(f"--sections {name}: {why}")
        result.notes.append(f"{name}: {why}")

    traced = None
    if recurrent and {"gates", "states", "units"} & set(chosen):
        with torch.no_grad():
            traced = trace(item.model, item.batch)
    for name in chosen:
        builder = _BUILDERS[name]
        try:
            builder(item, out, body, result, traced=traced, recurrent=recurrent, kind=kind, signals=signals,
                    top_units=top_units, max_units=max_units, reference=reference)
        except _NotApplicable as e:
            skip(name, str(e))
    result.html.write_text(_page(item, body, result, kind), encoding="utf-8")
    return result


class _NotApplicable(Exception):
    """A section that does not apply to this model; the message says why."""


def _figure(result: ReportResult, body: list, path: Path, caption: str) -> None:
    result.images.append(path)
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    body.append(f'<figure><img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{caption}</figcaption></figure>")


def _no_recurrent(kind: str, what: str) -> _NotApplicable:
    return _NotApplicable(f"the bundle's encoder is {kind!r}, which has no {what} (only lstm, gru, rnn, mingru "
                          "and minlstm encoders do); see attention and saliency instead")


# --- sections ------------------------------------------------------------------------------------------------

def _gradients(item: Inspected, out: Path, body: list, result: ReportResult, *, recurrent, kind, reference, **_):
    if not recurrent:
        raise _no_recurrent(kind, "hidden state over time to differentiate")
    body.append("<h2>Gradient flow through time</h2>")
    flow = gradient_flow(item.model, item.batch)
    _figure(result, body, plots.plot_gradient_flow(flow, out / "gradient_flow.png", item.units),
            "‖∂L/∂h_t‖ for every input step and layer: the loss is the model's own "
            f"({html.escape(item.prediction)}). A curve that falls towards the left is a vanishing gradient: early "
            "steps barely change the loss.")
    jac = jacobian_norms(item.model, item.batch)
    _figure(result, body, plots.plot_jacobian(jac, out / "jacobian.png", item.units),
            f"‖∂h_T/∂h_t‖_F with T = {jac.T} (the last step), the {jac.method} Frobenius norm of the Jacobian "
            "(exact: one backward pass per unit; random: the mean of 16 random projections): how much the final "
            "state still depends on each earlier state.")
    clip = clipping_effect(item.model, item.batch, steps=1)
    _figure(result, body, plots.plot_clipping(clip, out / "clipping.png"),
            f"The parameter gradient on this input: {clip.before[0]:.3g} unclipped, {clip.after_norm[0]:.3g} after "
            f"clipping by norm (max_norm {clip.max_norm:g}, same direction), {clip.after_value[0]:.3g} after "
            f"clipping by value ({clip.clip_value:g}; cosine to the unclipped direction "
            f"{clip.cosine_value[0]:.3f}).")
    if reference:
        _reference(item, out, body, result)


def _reference(item: Inspected, out: Path, body: list, result: ReportResult) -> None:
    """Untrained RNN tanh, LSTM and GRU layers at the bundle's width on the embedded input: the textbook picture."""
    from rnnlab.nn import Recurrent

    layer = recurrent_layers(item.model)[0][1]
    x = _embedded_input(item)  # (1, T, I)
    H = layer.hidden_size
    torch.manual_seed(0)
    models = {}
    for name, cell, options in (("RNN tanh", "rnn", {"recurrent_init": "uniform"}), ("LSTM", "lstm", {}),
                                ("GRU", "gru", {})):
        models[name] = Recurrent(cell, x.shape[-1], H, impl="loop", **options).eval()
    results = compare_gradient_flow(models, {"x": x}, method="random" if H > 64 else "auto")
    _figure(result, body, plots.plot_vanishing(results, out / "vanishing.png"),
            f"Reference: untrained single layers (H = {H}, torch.nn's initialisation for the RNN) on this input's "
            "embeddings. The plain RNN's dependence on the past decays geometrically; the LSTM's and GRU's decays "
            "far more slowly.")


def _embedded_input(item: Inspected) -> torch.Tensor:
    emb = getattr(getattr(item.model, "inputs", None), "embedding", None)
    with torch.no_grad():
        if emb is not None:
            return emb(item.batch["x"]).detach()
        return item.batch["x"].float()


def _gates(item: Inspected, out: Path, body: list, result: ReportResult, *, traced, recurrent, kind, max_units, **_):
    if not recurrent:
        raise _no_recurrent(kind, "gates")
    gated = [layer for layer in traced.layers if layer.gates]
    if not gated:
        raise _NotApplicable(f"the bundle's encoder is {kind!r}, an Elman RNN: its step has no gates "
                             "(see hidden states)")
    body.append("<h2>Gates over time</h2>")
    n = item.batch["x"].shape[1]
    stats = {}
    for k, layer in enumerate(gated):
        gates = {name: v[0, :n] for name, v in layer.gates.items()}
        _figure(result, body, plots.plot_gates(gates, out / f"gates_{k}.png", item.units, max_units=max_units,
                                               title=f"{layer.name} ({layer.cell}): gates per unit and step"),
                f"{html.escape(layer.name)}: each gate per unit (rows, first {max_units}) and input step (columns). "
                "Sigmoid gates from 0 (closed, dark) to 1 (open, yellow); candidates from -1 (blue) to 1 (red).")
        stats[layer.name] = saturation(layer.gates, traced.lengths)
    _figure(result, body, plots.plot_saturation(stats, out / "saturation.png"),
            "Saturation: the share of each sigmoid gate's values below 0.1 or above 0.9 on this input. "
            "A saturated gate acts as a switch and passes little gradient.")
    body.append(_saturation_table(stats))


def _saturation_table(stats: dict) -> str:
    rows = "".join(f"<tr><td>{html.escape(layer)}</td><td>{html.escape(g)}</td><td>{s['low']:.3f}</td>"
                   f"<td>{s['high']:.3f}</td><td>{s['mean']:.3f}</td></tr>"
                   for layer, gates in stats.items() for g, s in gates.items())
    return ("<table><tr><th>layer</th><th>gate</th><th>&lt; 0.1</th><th>&gt; 0.9</th><th>mean</th></tr>"
            f"{rows}</table>")


def _states(item: Inspected, out: Path, body: list, result: ReportResult, *, traced, recurrent, kind, max_units,
            **_):
    if not recurrent:
        raise _no_recurrent(kind, "hidden state over time")
    body.append("<h2>Hidden and cell states</h2>")
    n = item.batch["x"].shape[1]
    for k, layer in enumerate(traced.layers):
        for what, tensor, label in (("h", layer.h, "hidden state h_t"), ("c", layer.c, "cell state c_t")):
            if tensor is None:
                continue
            m = tensor[0, :n, :max_units].T.numpy()  # (H, T)
            bound = max(float(abs(m).max()), 1e-9)
            path = plots.plot_heatmap(m, out / f"{'hidden' if what == 'h' else 'cell'}_{k}.png", item.units,
                                      title=f"{layer.name}: {label} per unit", vmin=-bound, vmax=bound)
            _figure(result, body, path, f"{html.escape(layer.name)}: {label} of each unit (rows, first {max_units}) "
                                        "after each input step; red positive, blue negative.")


def _units(item: Inspected, out: Path, body: list, result: ReportResult, *, traced, recurrent, kind, signals,
           top_units, **_):
    if not recurrent:
        raise _no_recurrent(kind, "units with a state to match against a signal")
    from .units import HiddenStates

    states = HiddenStates([x.name for x in traced.layers], [x.cell for x in traced.layers],
                          [x.h for x in traced.layers], [x.c for x in traced.layers], traced.lengths)
    body.append("<h2>Units that track a signal</h2>")
    for signal in signals:
        search = unit_search(states, None, signal, units=item.units, top=top_units)
        if float(search.values.std()) == 0.0:
            body.append(f"<p>{html.escape(signal)}: constant on this input (nothing to track).</p>")
            continue
        safe = "".join(c if c.isalnum() else "_" for c in signal)[:40]
        _figure(result, body, plots.plot_unit_traces(search, out / f"units_{safe}.png", item.units),
                f"The signal {html.escape(signal)} (top) and the {len(search.top)} units whose activation correlates "
                "best with it (Pearson r over the input).")
        layer, what, unit, r = search.top[0]
        index = states.names.index(layer)
        acts = (states.h if what == "h" else states.c)[index][0, : len(item.units), unit]
        body.append(f"<p class='legend'>{html.escape(layer)} {what}[{unit}] (r = {r:+.2f}) over the text:</p>")
        body.append(_coloured_text(item.units, acts.tolist()))


def _attention(item: Inspected, out: Path, body: list, result: ReportResult, *, kind, **_):
    try:
        maps = attention_maps(item.model, item.batch)
    except ValueError as e:
        raise _NotApplicable(str(e)) from None
    body.append("<h2>Attention</h2>")
    if maps.kind == "alignment":
        _figure(result, body, plots.plot_attention(maps.weights[0], out / "attention.png", item.units,
                                                   item.target_units),
                "Alignment: the decoder's attention over the source (columns) at each output step (rows); darker is "
                "more weight. Each row sums to 1.")
    else:
        weights = maps.weights[0, : len(item.units)]
        _figure(result, body, plots.plot_attention(weights, out / "attention.png", item.units),
                "Attention pooling: the weight of each input step in the summary the classifier reads.")
        body.append(_coloured_text(item.units, weights.tolist(), positive_only=True))


def _saliency(item: Inspected, out: Path, body: list, result: ReportResult, **_):
    try:
        s = saliency(item.model, item.batch, target=item.batch.get("y") if item.task in ("classify", "tag") else None)
    except ValueError as e:
        raise _NotApplicable(str(e)) from None
    body.append("<h2>Saliency (gradient × input)</h2>")
    if s.kind == "sequence":
        scores = s.scores[0, : len(item.units)]
        _figure(result, body, plots.plot_saliency(scores, out / "saliency.png", item.units),
                f"How much each token pushes towards the predicted class ({html.escape(item.prediction)}): "
                "the gradient of its logit times the token's embedding, summed over the embedding; red towards, "
                "blue away.")
        body.append(_coloured_text(item.units, scores.tolist()))
    else:
        m = s.scores[0][:, : len(item.units)]
        _figure(result, body, plots.plot_saliency(m, out / "saliency.png", item.units, item.target_units),
                "Each output (row: the predicted tag, next token or target token) against each input token "
                "(column): gradient × input embedding; red towards, blue away.")


_BUILDERS = {"gradients": _gradients, "gates": _gates, "states": _states, "units": _units,
             "attention": _attention, "saliency": _saliency}


# --- the page ------------------------------------------------------------------------------------------------

def _coloured_text(units, values, positive_only: bool = False) -> str:
    """Karpathy-style text: each unit's background is its value (red positive, blue negative)."""
    bound = max((abs(v) for v in values), default=0.0) or 1.0
    spans = []
    for u, v in zip(units, values):
        a = min(1.0, abs(v) / bound)
        colour = f"rgba(192,57,43,{a:.2f})" if v >= 0 or positive_only else f"rgba(36,113,163,{a:.2f})"
        text = html.escape(u).replace("\n", "⏎<br>")
        spans.append(f'<span style="background:{colour}" title="{v:.3f}">{text}</span>')
    return f"<pre class='text'>{''.join(spans)}</pre>"


_CSS = """
body { font-family: sans-serif; margin: 24px; max-width: 1150px; color: #222; }
h1 { font-size: 22px; } h2 { font-size: 18px; border-bottom: 1px solid #ccc; padding-bottom: 4px; }
figure { margin: 12px 0 20px 0; } img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 13px; color: #444; max-width: 1000px; }
pre.text { white-space: pre-wrap; font-size: 14px; line-height: 1.6; border: 1px solid #eee; padding: 8px; }
table { border-collapse: collapse; font-size: 13px; } td, th { border: 1px solid #ccc; padding: 2px 8px; }
.warn { color: #8a4b00; } .note { color: #555; } .legend { font-size: 13px; margin-bottom: 2px; }
"""


def _page(item: Inspected, body: list, result: ReportResult, kind: str) -> str:
    head = [f"<h1>rnnlab inspect: {html.escape(Path(item.bundle).name or item.bundle)}</h1>",
            "<table>",
            f"<tr><td>bundle</td><td>{html.escape(item.bundle)}</td></tr>",
            f"<tr><td>task</td><td>{html.escape(item.task)}</td></tr>",
            f"<tr><td>model</td><td>{html.escape(type(item.model).__name__)}, encoder {html.escape(kind)}</td></tr>",
            f"<tr><td>input</td><td>{len(item.units)} units</td></tr>",
            f"<tr><td>prediction</td><td>{html.escape(item.prediction)}</td></tr>",
            "</table>",
            f"<pre class='text'>{html.escape(item.text)}</pre>"]
    head += [f"<p class='warn'>warning: {html.escape(w)}</p>" for w in result.warnings]
    head += [f"<p class='note'>left out: {html.escape(n)}</p>" for n in result.notes]
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>rnnlab inspect</title>"
            f"<style>{_CSS}</style></head><body>\n" + "\n".join(head + body) + "\n</body></html>\n")
