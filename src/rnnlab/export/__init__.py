"""ONNX export: a whole-sequence graph and a single-step graph with the state explicit (docs/export.md).

``rnnlab.export.to_onnx(model_or_bundle, "model.onnx")`` writes ``model.onnx``, ``model.step.onnx`` and
``model.json`` and checks them against PyTorch in onnxruntime. Needs the ``export`` extra (onnx, onnxscript,
onnxruntime), imported only when exporting. The names below load on first use, so that ``rnnlab.cli`` (which
imports :mod:`rnnlab.export.cli`) starts without torch's exporter.
"""
from __future__ import annotations

__all__ = ["ExportResult", "step_reason", "to_onnx", "unsupported_reason"]


def __getattr__(name: str):
    if name in __all__:
        from . import onnx_export

        return getattr(onnx_export, name)
    raise AttributeError(f"module 'rnnlab.export' has no attribute {name!r}")
