"""Looking inside a recurrent model: gradients through time, gates, hidden states, attention, saliency, a report.

Every function takes a model and a batch (the dict its ``forward``/``loss`` reads) and returns tensors in small
dataclasses, so a notebook can plot them its own way; :mod:`rnnlab.inspect.plots` draws them as rnnlab does and
:func:`report` writes them all for a bundle and an input text (``rnnlab inspect BUNDLE``).

    from rnnlab.inspect import gradient_flow, jacobian_norms, gate_activations, unit_search
    flow = gradient_flow(model, batch)          # ‖∂L/∂h_t‖: flow.norms (K, B, T)
    jac = jacobian_norms(model, batch)          # ‖∂h_T/∂h_t‖_F: jac.norms (K, B, T + 1)
    gates = gate_activations(model, batch)      # gates.gates[k]["f"] (B, T, H)

The fused kernels expose neither gates nor per-step states, so the batch is re-run through the reference cell
loop on the same weights (:mod:`rnnlab.inspect.trace`); tests check that it gives the model's own outputs.
"""
from __future__ import annotations

from .attention import AttentionMaps, attention_maps
from .gates import GateActivations, cell_gates, gate_activations, saturation
from .gradients import (
    ClipTrace,
    GradientFlow,
    JacobianNorms,
    clipping_effect,
    compare_gradient_flow,
    gradient_flow,
    jacobian_norms,
)
from .saliency import Saliency, saliency
from .trace import LayerTrace, Trace, trace
from .units import SIGNALS, HiddenStates, UnitSearch, hidden_states, signal_values, unit_search


def report(bundle, text=None, out="report", **options):
    """Write the HTML report and PNGs for ``bundle`` on ``text`` into ``out``; see :func:`rnnlab.inspect.report.
    write_report` for the options. Returns the :class:`~rnnlab.inspect.report.ReportResult`."""
    from .report import write_report

    return write_report(bundle, text, out, **options)


__all__ = [
    "AttentionMaps", "ClipTrace", "GateActivations", "GradientFlow", "HiddenStates", "JacobianNorms", "LayerTrace",
    "SIGNALS", "Saliency", "Trace", "UnitSearch", "attention_maps", "cell_gates", "clipping_effect",
    "compare_gradient_flow", "gate_activations", "gradient_flow", "hidden_states", "jacobian_norms", "report",
    "saliency", "saturation", "signal_values", "trace", "unit_search",
]
