"""``to_onnx``: a bundle (or a structure) -> the sequence graph, the step graph and a JSON description.

torch.onnx's dynamo-based exporter (``torch.onnx.export(..., dynamo=True)``: ``torch.export`` then onnxscript)
captures :mod:`rnnlab.export.graphs`, whose time loop is a ``scan`` that becomes one ONNX ``Scan`` node; the
batch and the length are dynamic axes. No TorchScript: the legacy exporter is not used for any op. After
writing, the graphs are run in onnxruntime on inputs of another batch size and length, with variable lengths,
and compared with the PyTorch model (``check=True``): a graph that disagrees is an error, not a file.

Files, for ``path = "model.onnx"``: ``model.onnx`` (the whole sequence), ``model.step.onnx`` (one step, the
state as explicit inputs and outputs), ``model.json`` (the structure, the inputs and outputs with their shapes,
the state's size, the bundle's assets such as the vocabulary, and a CRF's transition scores for a tagger).
For a Seq2Seq the sequence graph is the encoder and the step graph one decoder step (:mod:`.seq2seq`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import nn

from rnnlab.nn.state import LSTMState
from rnnlab.structures.encoders import RECURRENT_KINDS

from .graphs import SequenceGraph, StepGraph, is_lstm

log = logging.getLogger(__name__)

INSTALL = "pip install 'rnnlab[export]' (or: pip install onnx onnxscript onnxruntime)"
STRUCTURES = ("LanguageModel", "ManyToOne", "ManyToMany", "Seq2Seq")
TOLERANCE = 1e-4


@dataclass(frozen=True)
class ExportResult:
    """What ``to_onnx`` wrote."""

    sequence: Path
    """The whole-sequence graph (for Seq2Seq: the encoder over the source)."""
    step: Optional[Path]
    """The single-step graph (for Seq2Seq: one decoder step); None when the model has none (``step_skipped``)."""
    metadata: Path
    """The JSON description: inputs, outputs, shapes, state size, assets."""
    step_skipped: Optional[str] = None
    """Why there is no step graph (a bidirectional encoder, pooling other than 'last'), else None."""
    max_error: Optional[dict] = None
    """The largest |onnxruntime - PyTorch| per graph output, when checked."""


@dataclass(frozen=True)
class GraphSpec:
    """One graph to export: the module, its argument names and axes, an example, and PyTorch's reference."""

    kind: str
    """sequence | step"""
    module: nn.Module
    inputs: tuple[str, ...]
    """One name per argument of ``module.forward``; an argument that is None in the example is left out."""
    outputs: tuple[str, ...]
    axes: tuple[Optional[dict], ...]
    """Per argument: {axis: "batch" | "time"}, the dynamic axes."""
    example: Callable[..., tuple]
    """(B, T, *, seed, zero_state) -> the arguments (None for those the configuration does not use)."""
    reference: Callable[[tuple], list]
    """arguments -> PyTorch's outputs through the structure's own methods."""
    shapes: dict
    """name -> "dtype (shape)" for the description."""


def require_onnx() -> None:
    """ImportError naming the install command when onnx, onnxscript or onnxruntime is missing."""
    import importlib.util

    missing = [m for m in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(f"ONNX export needs {', '.join(missing)}: {INSTALL}")


def unsupported_reason(model: nn.Module) -> Optional[str]:
    """Why ``model`` has no ONNX export, in one line naming the structure or option; None when it exports."""
    name = type(model).__name__
    if name not in STRUCTURES:
        return (f"{name} does not export to ONNX: only {', '.join(STRUCTURES)} (tasks textgen, classify, tag, "
                "translate) with a recurrent encoder do")
    kind = model.config.encoder.kind
    if kind not in RECURRENT_KINDS:
        return (f"{name} with encoder.kind={kind!r} does not export to ONNX: only the recurrent encoders "
                f"{', '.join(RECURRENT_KINDS)} do")
    if getattr(model, "chars", None) is not None:
        return (f"{name} with char_encoder={model.config.char_encoder!r} does not export to ONNX: "
                "train the tagger with char_encoder='none'")
    return None


def step_reason(model: nn.Module) -> Optional[str]:
    """Why ``model`` has no single-step graph (it still has the sequence graph); None when it has one."""
    name = type(model).__name__
    if name == "Seq2Seq":
        return None  # the step is the decoder's, which is always unidirectional
    if model.encoder.num_directions == 2:
        return f"{name} with encoder.bidirectional=true has no step graph: the backward direction reads the future"
    if name == "ManyToOne" and model.config.pooling != "last":
        return (f"ManyToOne with pooling={model.config.pooling!r} has no step graph: "
                "only pooling='last' reads the state alone")
    return None


def to_onnx(
    model_or_bundle: Union[nn.Module, str, Path],
    path: Union[str, Path],
    *,
    step: bool = True,
    check: bool = True,
    opset_version: Optional[int] = None,
) -> ExportResult:
    """Export a LanguageModel, ManyToOne, ManyToMany or Seq2Seq with a recurrent encoder to ONNX.

    Args:
        model_or_bundle: a structure, or the path of a bundle written by ``rnnlab train``.
        path: the sequence graph's file, ending in ``.onnx``; the step graph goes beside it as ``NAME.step.onnx``,
            the description as ``NAME.json``.
        step: also write the step graph (where the model has one).
        check: run both graphs in onnxruntime and compare with PyTorch (max |difference| ≤ 1e-4), else raise.
        opset_version: the ONNX opset; None is the exporter's default.

    Raises ValueError (an unsupported structure or option, a bad path or bundle), FileNotFoundError (no
    bundle), ImportError (onnx/onnxscript/onnxruntime missing), RuntimeError (a graph that disagrees).
    """
    require_onnx()
    path = Path(path)
    if path.suffix != ".onnx":
        raise ValueError(f"the output path must end in .onnx, got {str(path)!r}")
    model, assets, task = _load(model_or_bundle)
    reason = unsupported_reason(model)
    if reason:
        raise ValueError(reason)
    training = model.training
    model.eval()  # the graphs are inference graphs: no dropout; the caller's mode comes back below
    try:
        return _export_all(model, assets, task, path, step, check, opset_version)
    finally:
        model.train(training)


def _export_all(model, assets, task, path: Path, step: bool, check: bool, opset_version) -> ExportResult:
    path.parent.mkdir(parents=True, exist_ok=True)
    step_path = path.with_name(path.stem + ".step.onnx")
    meta_path = path.with_name(path.stem + ".json")
    skipped = step_reason(model) if step else "not asked for (step=False)"
    specs = specs_for(model)
    files = {"sequence": path, "step": step_path}
    errors = {}
    for spec in specs:
        if spec.kind == "step" and skipped is not None:
            continue
        export_graph(spec, files[spec.kind], opset_version)
        if check:
            try:
                errors[spec.kind] = check_graph(spec, files[spec.kind])
            except Exception:
                files[spec.kind].unlink()  # a graph that disagrees is an error, not a file
                raise
    if skipped is not None and step_path.exists():
        step_path.unlink()  # a stale step graph of an earlier export would not match this one
    written = [s for s in specs if s.kind == "sequence" or skipped is None]
    meta = describe(model, task, assets, {s.kind: (s, files[s.kind]) for s in written})
    meta_path.write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return ExportResult(path, None if skipped else step_path, meta_path, skipped, errors or None)


# -- export ---------------------------------------------------------------------------------------------------
def _load(model_or_bundle) -> tuple[nn.Module, dict, Optional[str]]:
    if isinstance(model_or_bundle, nn.Module):
        return model_or_bundle, {}, None
    if not isinstance(model_or_bundle, (str, Path)):
        raise TypeError(f"model_or_bundle must be a structure (nn.Module) or a bundle path, "
                        f"got {type(model_or_bundle).__name__}")
    from rnnlab.training.checkpoint import load_bundle

    path = Path(model_or_bundle)
    if not path.exists():
        raise FileNotFoundError(f"bundle not found: {path} (a folder written by 'rnnlab train TASK')")
    bundle = load_bundle(path)
    return bundle.model, bundle.assets, bundle.task


def present(spec: GraphSpec, args: tuple) -> list[str]:
    """The names of the arguments that are not None: the graph's inputs."""
    return [n for n, a in zip(spec.inputs, args) if a is not None]


def export_graph(spec: GraphSpec, path: Path, opset_version: Optional[int] = None) -> None:
    """Export ``spec`` to ``path`` with torch.onnx's dynamo exporter, batch and time dynamic."""
    dims = {"batch": torch.export.Dim("batch", min=1), "time": torch.export.Dim("time", min=1)}
    args = spec.example(3, 5, seed=0, zero_state=False)
    dynamic = tuple(None if a is None else {ax: dims[d] for ax, d in axes.items()} for a, axes in zip(args, spec.axes))
    try:
        with torch.no_grad(), _quiet_exporter():
            program = torch.onnx.export(
                spec.module, args, dynamo=True, input_names=present(spec, args), output_names=list(spec.outputs),
                dynamic_shapes=dynamic, opset_version=opset_version, verbose=False,
            )
    except Exception as e:  # the exporter's errors are long; the first line says which op failed
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        name = type(spec.module.model).__name__
        raise RuntimeError(f"torch.onnx could not export the {spec.kind} graph of {name}: {first}") from e
    program.save(str(path))
    log.debug("wrote the %s graph: %s", spec.kind, path)


@contextlib.contextmanager
def _quiet_exporter():
    """Hide the exporter's chatter (optional torchvision ops, deprecations, axis renaming), not its errors."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def specs_for(model: nn.Module) -> list[GraphSpec]:
    """The sequence graph and the step graph of ``model`` (a supported structure)."""
    if type(model).__name__ == "Seq2Seq":
        from .seq2seq import seq2seq_specs

        return seq2seq_specs(model)
    return recurrent_specs(model)


def recurrent_specs(model: nn.Module) -> list[GraphSpec]:
    """LanguageModel, ManyToOne, ManyToMany: (x, lengths, h0, c0) -> (y, hN, cN) and (x, h0, c0) -> (y, hN, cN)."""
    layer = model.encoder.layer
    lstm = is_lstm(layer)
    LD, H, O = layer.num_layers * layer.num_directions, layer.hidden_size, model.head.out_features
    tokens = model.inputs.embedding is not None
    I = model.inputs.output_size
    st = f"float32 ({LD}, B, {H})"
    state_shapes = {"h0": st, "hN": st, **({"c0": st, "cN": st} if lstm else {})}
    outputs = ("y", "hN", "cN") if lstm else ("y", "hN")
    y_seq = f"float32 (B, {O})" if type(model).__name__ == "ManyToOne" else f"float32 (B, T, {O})"

    def seq_example(B, T, *, seed, zero_state):
        g = torch.Generator().manual_seed(seed)
        return (_inputs(model, (B, T), g), example_lengths(B, T, g), *_state(model, B, g, zero_state))

    def step_example(B, T, *, seed, zero_state):
        g = torch.Generator().manual_seed(seed)
        return (_inputs(model, (B,), g), *_state(model, B, g, zero_state))

    sequence = GraphSpec(
        "sequence", SequenceGraph(model).eval(), ("x", "lengths", "h0", "c0"), outputs,
        ({0: "batch", 1: "time"}, {0: "batch"}, {1: "batch"}, {1: "batch"}), seq_example,
        lambda args: reference_sequence(model, args),
        {"x": "int64 (B, T) token ids" if tokens else f"float32 (B, T, {I})", "lengths": "int64 (B,)",
         "y": y_seq, **state_shapes})
    step = GraphSpec(
        "step", StepGraph(model).eval(), ("x", "h0", "c0"), outputs, ({0: "batch"}, {1: "batch"}, {1: "batch"}),
        step_example, lambda args: reference_step(model, args),
        {"x": "int64 (B,) token ids" if tokens else f"float32 (B, {I})", "y": f"float32 (B, {O})", **state_shapes})
    return [sequence, step]


def example_lengths(B: int, T: int, g: torch.Generator) -> torch.Tensor:
    """(B,) lengths from 1 to T, the first T and the second 1, so that export never specialises a length."""
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    lengths[0] = T
    if B > 1:
        lengths[1] = 1
    return lengths


def _sequence_example(model: nn.Module, B: int, T: int, *, seed: int = 0, zero_state: bool = False) -> tuple:
    """(x, lengths, h0[, c0]) for the sequence graph of a LanguageModel, ManyToOne or ManyToMany."""
    return _drop_none(recurrent_specs(model)[0].example(B, T, seed=seed, zero_state=zero_state))


def _step_example(model: nn.Module, B: int, *, seed: int = 0) -> tuple:
    return _drop_none(recurrent_specs(model)[1].example(B, 1, seed=seed, zero_state=False))


def _drop_none(args: tuple) -> tuple:
    return tuple(a for a in args if a is not None)


def _inputs(model: nn.Module, shape: tuple, g: torch.Generator) -> torch.Tensor:
    emb = model.inputs.embedding
    if emb is not None:
        return torch.randint(0, emb.num_embeddings, shape, generator=g)
    return torch.randn(*shape, model.inputs.output_size, generator=g)


def _state(model: nn.Module, B: int, g: torch.Generator, zero: bool) -> tuple:
    """(h0, c0) for the LSTM, (h0, None) otherwise: (L·D, B, H) each, random unless ``zero``."""
    layer = model.encoder.layer
    shape = (layer.num_layers * layer.num_directions, B, layer.hidden_size)
    make = (lambda: torch.zeros(shape)) if zero else (lambda: 0.5 * torch.randn(*shape, generator=g))
    return (make(), make()) if is_lstm(layer) else (make(), None)


# -- parity with PyTorch ----------------------------------------------------------------------------------
def session(path: Union[str, Path], *, threads: int = 0):
    """An onnxruntime CPU session for ``path``; ``threads`` intra-op threads (0: onnxruntime's default)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run(path_or_session, names: list[str], args: tuple) -> list[np.ndarray]:
    """Run a graph on torch tensors ``args`` named ``names``; numpy outputs."""
    sess = session(path_or_session) if isinstance(path_or_session, (str, Path)) else path_or_session
    return sess.run(None, {n: a.numpy() for n, a in zip(names, args)})


@torch.no_grad()
def reference_sequence(model: nn.Module, args: tuple) -> list[torch.Tensor]:
    """PyTorch's (y, hN[, cN]) for the sequence graph's inputs, through the structure's own forward."""
    x, lengths, *state = _drop_none(args)
    st = LSTMState(*state) if len(state) == 2 else state[0]
    _, final = model.encoder.forward_with_state(model.inputs(x), st, lengths)
    if type(model).__name__ == "LanguageModel":
        y = model({"x": x, "lengths": lengths, "state": st}).logits
    else:  # ManyToOne and ManyToMany start from zeros: their checks pass a zero state
        y = model({"x": x, "lengths": lengths}).logits
    return [y, *_parts(final)]


@torch.no_grad()
def reference_step(model: nn.Module, args: tuple) -> list[torch.Tensor]:
    x, *state = _drop_none(args)
    st = LSTMState(*state) if len(state) == 2 else state[0]
    y, final = model.encoder.step(model.inputs(x.unsqueeze(1)).squeeze(1), st)
    return [model.head(y), *_parts(final)]


def _parts(state) -> list[torch.Tensor]:
    return [state.h, state.c] if isinstance(state, LSTMState) else [state]


def _compare(kind: str, names, got: list[np.ndarray], want: list[torch.Tensor]) -> dict:
    if len(got) != len(want):
        raise RuntimeError(f"the ONNX {kind} graph gives {len(got)} outputs, PyTorch {len(want)}")
    errors = {n: float(np.abs(a - b.numpy()).max()) for n, a, b in zip(names, got, want)}
    bad = {n: e for n, e in errors.items() if not e <= TOLERANCE}
    if bad:
        raise RuntimeError(f"the ONNX {kind} graph disagrees with PyTorch: max |difference| {bad} > {TOLERANCE}")
    return errors


def check_graph(spec: GraphSpec, path: Union[str, Path]) -> dict:
    """onnxruntime vs PyTorch on a batch and length other than the export example's (lengths 1..T)."""
    zero = type(spec.module.model).__name__ in ("ManyToOne", "ManyToMany")  # their forward starts from zeros
    args = spec.example(4, 7, seed=1, zero_state=zero)
    return _compare(spec.kind, spec.outputs, run(path, present(spec, args), _drop_none(args)), spec.reference(args))


# -- the description --------------------------------------------------------------------------------------
def describe(model: nn.Module, task: Optional[str], assets: dict, written: dict) -> dict:
    """What an app needs to call the graphs: names, shapes, dtypes, the state's size, vocabularies."""
    layer = model.decoder if type(model).__name__ == "Seq2Seq" else model.encoder.layer
    meta: dict[str, Any] = {
        "structure": type(model).__name__, "task": task, "model_config": dataclasses.asdict(model.config),
        "state": {"layers_x_directions": layer.num_layers * layer.num_directions, "hidden_size": layer.hidden_size,
                  "lstm": is_lstm(layer)},
        "sequence": None, "step": None,
    }
    for kind, (spec, file) in written.items():
        args = spec.example(3, 5, seed=0, zero_state=True)
        meta[kind] = {"file": file.name, "inputs": {n: spec.shapes[n] for n in present(spec, args)},
                      "outputs": {n: spec.shapes[n] for n in spec.outputs}}
    meta["assets"] = assets
    crf = getattr(model, "crf", None)
    if crf is not None:  # Viterbi stays outside the graph: y holds the emission scores
        meta["crf"] = {k: getattr(crf, k).tolist() for k in ("transitions", "start_transitions", "end_transitions",
                                                             "allowed_transitions", "allowed_start", "allowed_end")}
    return meta
