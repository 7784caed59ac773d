"""One time step of a served model, for sessions and streamed generation; probes of hidden units and gates.

A :class:`Stepper` wraps a model whose encoder is recurrent and unidirectional: ``step(x, state)`` advances B
rows at once (x (B,) token ids or (B, I) features; the state (L, B, H), an ``LSTMState`` of two for the LSTM),
so that the micro-batcher can step many sessions in one forward: their states are rows of a
:class:`~rnnlab.nn.state_table.StateTable` (``step_sessions`` gathers, steps and scatters them at once).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Union

import torch
from torch import Tensor

from rnnlab.nn.gru_cell import GRUCell
from rnnlab.nn.lstm_cell import LSTMCell
from rnnlab.nn.recurrent import Recurrent
from rnnlab.nn.state import LSTMState, State, map_state, select_layer
from rnnlab.nn.state_table import StateTable


def state_bytes(state: State) -> int:
    tensors = list(state) if isinstance(state, LSTMState) else [state]
    return sum(t.numel() * t.element_size() for t in tensors)


@torch.no_grad()
def gate_probe(layer: Any, x_last: Tensor, before: State, units: int) -> dict[str, Tensor]:
    """The gates of the last layer's cell at this step, for its first ``units`` units: {name: (B, units)}.

    Recomputed with the reference cell's equations (LSTM i, f, o; GRU r, z) from the last layer's input
    ``x_last`` (B, I_L) and its state before the step; {} for cells without gates (Elman RNN, minGRU, minLSTM).
    """
    if not isinstance(layer, Recurrent) or layer.bidirectional:
        return {}
    cell = layer.cells[-1]
    prev = select_layer(before, len(layer.cells) - 1)
    h = prev.h if isinstance(prev, LSTMState) else prev  # (B, H)
    if isinstance(cell, LSTMCell):
        a = cell._input_preact(x_last) + cell._recurrent_preact(h, None)  # (B, 4H)
        if cell.bias_ih is not None:
            a = a + cell.bias_ih + cell.bias_hh
        a_i, a_f, _, a_o = a.chunk(4, dim=1)
        gates = {"input": a_i, "forget": a_f, "output": a_o}
    elif isinstance(cell, GRUCell):
        x_hat, h_hat = cell._input_preact(x_last), cell._recurrent_preact(h, None)
        if cell.bias_ih is not None:
            x_hat, h_hat = x_hat + cell.bias_ih, h_hat + cell.bias_hh
        x_r, x_z, _ = x_hat.chunk(3, dim=1)
        h_r, h_z, _ = h_hat.chunk(3, dim=1)
        gates = {"reset": x_r + h_r, "update": x_z + h_z}
    else:
        return {}
    return {name: torch.sigmoid(a[:, :units]) for name, a in gates.items()}


class Stepper:
    """Steps a model's recurrent encoder; subclasses say how inputs enter and what comes out."""

    def __init__(self, model: Any, units: int = 32) -> None:
        self.model = model
        self.encoder = model.encoder
        self.units = units

    def initial_state(self) -> State:
        p = next(self.model.parameters())
        return self.encoder.initial_state(1, device=p.device, dtype=p.dtype)

    def state_bytes(self) -> int:
        return state_bytes(self.initial_state())

    def embed(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def head(self, y: Tensor) -> dict[str, Tensor]:
        raise NotImplementedError

    @torch.no_grad()
    def step(self, x: Tensor, state: State, *, probe: Union[bool, Tensor] = False) -> tuple[dict[str, Tensor], State]:
        """x (B,) or (B, I), state (L, B, H) -> ({"hidden" (B, units), head outputs, gates}, new state).

        ``probe``: True adds the gates of every row ({"gate_NAME": (B, units)}), a row index (P,) those of the
        P rows it names ((P, units), in its order), False none: the probe is a second product of the last
        layer's weights, so a step pays for it only when a request asks."""
        e = self.embed(x)  # (B, E)
        y, new = self.encoder.step(e, state)  # (B, H)
        out = {"hidden": y[:, : self.units], **self.head(y)}
        if probe is True or (isinstance(probe, Tensor) and probe.numel()):
            layer = self.encoder.layer
            h_new = new.h if isinstance(new, LSTMState) else new  # (L, B, H)
            x_last = e if h_new.shape[0] == 1 else h_new[-2]  # (B, I_L)
            before = state
            if isinstance(probe, Tensor):
                x_last, before = x_last.index_select(0, probe), map_state(lambda t: t.index_select(1, probe), state)
            out.update({f"gate_{k}": v for k, v in gate_probe(layer, x_last, before, self.units).items()})
        return out, new

    def new_table(self, capacity: int = 64) -> StateTable:
        """A :class:`StateTable` for this model's sessions, one row each."""
        return StateTable(self.initial_state(), capacity)

    @torch.no_grad()
    def step_sessions(self, table: StateTable, steps: list[SessionStep]) -> list[dict]:
        """One batched step of B sessions' rows in ``table``: gather, one forward, scatter; the outputs of each
        row as plain Python values (the softmax, top-k and ``tolist`` done once for the batch):
        {"hidden": [units], "gates"?: {name: [units]}, "top"?: ([p], [id]), "output"?: [O]}."""
        rows = [s.row for s in steps]
        x = _batch_inputs([s.x for s in steps])  # (B,) or (B, I)
        probed = [b for b, s in enumerate(steps) if s.probe]
        probe = torch.tensor(probed, dtype=torch.long) if probed else False
        out = table.step(lambda x_, state: self.step(x_, state, probe=probe), rows, x)
        hidden = out["hidden"].tolist()  # B lists of units
        results = [{"hidden": h[: s.units]} for h, s in zip(hidden, steps)]
        gates = {k[5:]: v.tolist() for k, v in out.items() if k.startswith("gate_")}
        for p, b in enumerate(probed):
            results[b]["gates"] = {name: g[p][: steps[b].units] for name, g in gates.items()}
        if "logits" in out:
            probs = torch.softmax(out["logits"].float(), dim=-1)  # (B, V)
            k = min(max(s.top_k for s in steps), probs.shape[1])
            p, ids = probs.topk(k, dim=1)  # (B, k)
            for r, s, ps, ks in zip(results, steps, p.tolist(), ids.tolist()):
                r["top"] = (ps[: s.top_k], ks[: s.top_k])
        if "output" in out:
            for r, o in zip(results, out["output"].tolist()):
                r["output"] = o
        return results


def _batch_inputs(xs: list) -> Tensor:
    """B inputs (ints, lists of I numbers, or tensors (1,) / (1, I)) -> (B,) token ids or (B, I) features."""
    if all(isinstance(x, Tensor) for x in xs):
        return torch.cat(xs, dim=0)
    if all(isinstance(x, int) for x in xs):
        return torch.tensor(xs, dtype=torch.long)
    return torch.tensor([x.tolist()[0] if isinstance(x, Tensor) else x for x in xs], dtype=torch.float32)


@dataclass(frozen=True)
class SessionStep:
    """One session's step request for :meth:`Stepper.step_sessions`."""

    row: int
    """The session's row in the model's state table."""
    x: Union[int, list, Tensor]
    """The input: a token id, a feature vector (a list of I numbers), or either as a tensor (1,) / (1, I)."""
    probe: bool = False
    """Return the gate activations too."""
    units: int = 32
    """Hidden units (and gate units) to return: the first ones of the last layer."""
    top_k: int = 5
    """Language models: the most likely next tokens to return."""


class TokenStepper(Stepper):
    """A language model: token ids in, next-token logits out."""

    def __init__(self, model: Any, banned: list[int], units: int = 32) -> None:
        super().__init__(model, units)
        self.banned = torch.tensor(sorted(set(banned)), dtype=torch.long)

    def embed(self, x: Tensor) -> Tensor:
        return self.model.inputs.embedding(x)  # (B, E)

    def head(self, y: Tensor) -> dict[str, Tensor]:
        logits = self.model.head(y)  # (B, V)
        if len(self.banned):
            logits = logits.index_fill(1, self.banned.to(logits.device), float("-inf"))
        return {"logits": logits}


class FeatureStepper(Stepper):
    """A model reading feature vectors (B, I): the hidden state, and the output layer where it has one."""

    def embed(self, x: Tensor) -> Tensor:
        size = self.model.inputs.output_size
        if x.dim() != 2 or x.shape[1] != size or not x.is_floating_point():
            raise ValueError(f"features must be vectors of {size} numbers, got shape {tuple(x.shape)}")
        return x

    def head(self, y: Tensor) -> dict[str, Tensor]:
        head = getattr(self.model, "head", None)
        return {"output": head(y)} if isinstance(head, torch.nn.Linear) and head.in_features == y.shape[1] else {}


def stepper_for(served: Any, units: int = 32) -> Optional[Stepper]:
    """The stepper of a served model, None when it cannot stream (no unidirectional recurrent encoder)."""
    cached = served.extra.get("_stepper", False)
    if cached is not False:
        return cached
    served.extra["_stepper"] = stepper = _build(served, units)
    return stepper


def _build(served: Any, units: int) -> Optional[Stepper]:
    model = served.model
    encoder = getattr(model, "encoder", None)
    inputs = getattr(model, "inputs", None)
    layer = getattr(encoder, "layer", None)
    if encoder is None or inputs is None or not hasattr(encoder, "step") or not isinstance(layer, Recurrent):
        return None
    if layer.bidirectional:
        return None
    if served.task == "textgen":
        return TokenStepper(model, served.extra.get("banned", []), units)
    if getattr(inputs, "embedding", None) is None:
        return FeatureStepper(model, units)
    return None
