"""ONNX export: a whole-sequence graph and a single-step graph with the state explicit (docs/export.md).

``rnnlab.export.to_onnx(model_or_bundle, "model.onnx")`` writes ``model.onnx``, ``model.step.onnx`` and
``model.json`` and checks them against PyTorch in onnxruntime. Needs the ``export`` extra (onnx, onnxscript,
onnxruntime), imported only when exporting.
"""
from .onnx_export import ExportResult, step_reason, to_onnx, unsupported_reason

__all__ = ["ExportResult", "step_reason", "to_onnx", "unsupported_reason"]
