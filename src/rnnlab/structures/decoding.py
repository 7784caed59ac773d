"""Decoding: greedy, sampling (temperature, top-k, top-p) and beam search, for any step-wise model.

The language model, the one-to-many generator and the seq2seq decoder all expose the same two methods
(:class:`Decoder`), so one implementation of each algorithm serves them all:

- ``step(tokens (B,), state) -> (logits (B, V), state)`` advances every batch row by one token;
- ``reorder(state, index (B',)) -> state`` selects or repeats batch rows of a state (beam search uses it to
  expand each row into beams and to follow the surviving beams). :func:`reorder_state` does it for any nested
  tuple / list / named tuple / dict of tensors, given the batch dimension.

Every function returns a :class:`Decoded` ``(tokens, lengths, scores)``:

- ``tokens`` (B, T) long: the generated tokens, *without* the start token. ``T`` is the longest row
  (at most ``max_new_tokens``; shorter when every row ended early). Positions past a row's length hold ``pad_token``.
- ``lengths`` (B,) long: generated tokens per row, the end token included when it was emitted.
- ``scores`` (B,): the sum of the model's log-probabilities ``log softmax(logits)`` of the row's tokens, the
  end token included, at temperature 1 and without filtering, whatever the sampling options were. So scores
  of different decoders of the same model compare directly.

End-token semantics: a row that emits ``end_token`` is finished; its later positions hold ``pad_token``
(default 0) and add nothing to its score, and decoding stops as soon as every row has finished. A row that never
emits it stops at ``max_new_tokens`` tokens. The decoder itself keeps being stepped for finished rows (fed
``end_token``) so that the batch stays rectangular; their outputs are ignored.

Gradients are left to the caller: wrap the call in ``torch.no_grad()`` for plain inference, or keep the graph
to differentiate the sample scores (REINFORCE).

References: top-k sampling (Fan et al., 2018, "Hierarchical Neural Story Generation"); nucleus / top-p
sampling (Holtzman et al., 2020, "The Curious Case of Neural Text Degeneration"); the length penalty
``lp(Y) = ((5 + |Y|) / 6) ** alpha`` (Wu et al., 2016, "Google's Neural Machine Translation System", §7).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Optional, Protocol, runtime_checkable

import torch
from torch import Tensor

__all__ = [
    "Decoded",
    "Decoder",
    "beam_search",
    "filter_logits",
    "greedy",
    "length_penalty_factor",
    "reorder_state",
    "sample",
]


@runtime_checkable
class Decoder(Protocol):
    """What the decoding functions need from a model. Shapes: B batch rows, V vocabulary."""

    def step(self, tokens: Tensor, state: Any) -> tuple[Tensor, Any]:
        """tokens (B,) long -> (logits (B, V) of the next token, the new state)."""
        ...

    def reorder(self, state: Any, index: Tensor) -> Any:
        """The state of batch rows ``index`` (B',) long of the current batch (rows may repeat)."""
        ...


class Decoded(NamedTuple):
    """The result of every decoding function (see the module docstring for the exact semantics)."""

    tokens: Tensor
    """(B, T) long: generated tokens without the start token, ``pad_token`` past each row's length."""
    lengths: Tensor
    """(B,) long: generated tokens per row, the end token included."""
    scores: Tensor
    """(B,): sum of the model's log-probabilities of each row's tokens (not length-normalised)."""


# ----------------------------------------------------------------------------------------------- states


def reorder_state(state: Any, index: Tensor, *, batch_dim: int) -> Any:
    """Select / repeat batch rows of every tensor in a nested state: ``t.index_select(batch_dim, index)``.

    ``state`` may be a tensor, ``None`` (left as is), or any nesting of tuples, lists, named tuples (such as
    ``LSTMState(h, c)``) and dicts of those; containers keep their type. ``batch_dim`` is the batch
    dimension of *every* tensor in this call: 0 for cell states (B, H) and attention memories (B, S, E),
    1 for layer states (L·D, B, H). A model whose state mixes both calls this once per part, e.g.::

        def reorder(self, state, index):
            layer_state, memory = state
            return (reorder_state(layer_state, index, batch_dim=1),
                    reorder_state(memory, index, batch_dim=0))

    Args:
        state: the nested state.
        index: (B',) integer tensor of rows of the current batch.
        batch_dim: which dimension of each tensor is the batch (negative counts from the end).
    """
    if not isinstance(index, Tensor) or index.dim() != 1 or index.is_floating_point() or index.dtype == torch.bool:
        given = f"shape {tuple(index.shape)} dtype {index.dtype}" if isinstance(index, Tensor) else type(index).__name__
        raise TypeError(f"index must be a 1-D integer tensor of batch rows, got {given}")
    if isinstance(batch_dim, bool) or not isinstance(batch_dim, int):
        raise TypeError(f"batch_dim must be an int, got {type(batch_dim).__name__}")
    return _reorder(state, index, batch_dim, "state")


def _reorder(state: Any, index: Tensor, batch_dim: int, path: str) -> Any:
    if state is None:
        return None
    if isinstance(state, Tensor):
        if not -state.dim() <= batch_dim < state.dim():
            raise ValueError(
                f"{path} has shape {tuple(state.shape)}, which has no batch_dim={batch_dim}; "
                "pass the batch dimension of this state (1 for layer states (L*D, B, H), 0 for (B, ...))"
            )
        return state.index_select(batch_dim, index.to(state.device))
    if isinstance(state, tuple) and hasattr(state, "_fields"):  # named tuple, e.g. LSTMState(h, c)
        fields = zip(state._fields, state, strict=True)
        return type(state)(*(_reorder(v, index, batch_dim, f"{path}.{f}") for f, v in fields))
    if isinstance(state, (tuple, list)):
        return type(state)(_reorder(v, index, batch_dim, f"{path}[{i}]") for i, v in enumerate(state))
    if isinstance(state, Mapping):
        return type(state)({k: _reorder(v, index, batch_dim, f"{path}[{k!r}]") for k, v in state.items()})
    raise TypeError(
        f"{path} must be a tensor, None, or a tuple/list/named tuple/dict of those, got {type(state).__name__}"
    )


# ------------------------------------------------------------------------------------------- validation


def _check_int(name: str, value: Any, *, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= {low}, got {type(value).__name__} {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")


def _check_start(start_tokens: Any) -> None:
    if not isinstance(start_tokens, Tensor):
        raise TypeError(f"start_tokens must be a 1-D integer tensor (B,), got {type(start_tokens).__name__}")
    if start_tokens.dim() != 1 or start_tokens.numel() == 0:
        raise ValueError(f"start_tokens must have shape (B,) with B >= 1, got shape {tuple(start_tokens.shape)}")
    if start_tokens.is_floating_point() or start_tokens.is_complex() or start_tokens.dtype == torch.bool:
        raise TypeError(f"start_tokens must be an integer tensor, got dtype {start_tokens.dtype}")


def _check_common(start_tokens: Any, max_new_tokens: Any, end_token: Any, pad_token: Any) -> None:
    _check_start(start_tokens)
    _check_int("max_new_tokens", max_new_tokens, low=1)
    if end_token is not None:
        _check_int("end_token", end_token, low=0)
    if isinstance(pad_token, bool) or not isinstance(pad_token, int):
        raise TypeError(f"pad_token must be an int, got {type(pad_token).__name__} {pad_token!r}")


def _check_filters(temperature: Any, top_k: Any, top_p: Any, *, allow_zero_temperature: bool) -> None:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise TypeError(f"temperature must be a number > 0, got {type(temperature).__name__}")
    if allow_zero_temperature:
        if not temperature >= 0:  # also rejects NaN
            raise ValueError(f"temperature must be >= 0 (0 means greedy argmax), got {temperature}")
    elif not temperature > 0:
        raise ValueError(f"temperature must be > 0 (for argmax decoding use greedy()), got {temperature}")
    if top_k is not None:
        if isinstance(top_k, bool) or not isinstance(top_k, int):
            raise TypeError(f"top_k must be None or an int >= 1, got {type(top_k).__name__} {top_k!r}")
        if top_k < 1:
            raise ValueError(f"top_k must be None or an int >= 1, got {top_k}")
    if top_p is not None:
        if isinstance(top_p, bool) or not isinstance(top_p, (int, float)):
            raise TypeError(f"top_p must be None or a number in (0, 1], got {type(top_p).__name__}")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be None or a number in (0, 1], got {top_p}")


def _log_probs(logits: Any, rows: int, end_token: Optional[int], *, check_finite: bool = True) -> Tensor:
    """Check what ``decoder.step`` returned and turn it into log-probabilities (B, V). ``check_finite=False``
    leaves the NaN/+inf check to the caller (:func:`_decode_to_length` makes it once, on the scores)."""
    logits = _checked_logits(logits, rows, end_token)
    if check_finite:
        _check_finite(logits)
    return torch.log_softmax(logits, dim=-1)


def _checked_logits(logits: Any, rows: int, end_token: Optional[int]) -> Tensor:
    """What ``decoder.step`` returned, checked to be logits (B, V) (NaN/+inf aside: :func:`_check_finite`), in
    float32 at least: a softmax over V in half precision loses the tail."""
    if not isinstance(logits, Tensor) or not logits.is_floating_point():
        given = f"dtype {logits.dtype}" if isinstance(logits, Tensor) else type(logits).__name__
        raise TypeError(f"decoder.step must return floating-point logits (B, V), got {given}")
    if logits.dim() != 2 or logits.size(0) != rows:
        raise ValueError(f"decoder.step must return logits of shape (B, V) with B={rows}, got {tuple(logits.shape)}")
    if end_token is not None and end_token >= logits.size(1):
        raise ValueError(f"end_token must be < V={logits.size(1)} (the logits' width), got {end_token}")
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    return logits


def _check_finite(logits: Tensor) -> None:
    """-inf is a masked token; NaN or +inf is a broken model."""
    if _maybe_not_finite(logits) and bool((logits.isnan() | logits.isposinf()).any()):
        raise ValueError("the model's next-token logits are not finite (NaN or +inf): its weights are broken, "
                         "e.g. saved from a diverged training run; retrain it (lower --trainer.lr, "
                         "--trainer.clip_norm 1.0)")


def _maybe_not_finite(logits: Tensor) -> bool:
    """A one-reduction screen for NaN or +inf among the logits, run at every generated token: their float64 sum
    is NaN or +inf when one is there (-inf alone, a masked token, gives -inf), and a float32 sum cannot overflow
    in float64. True also for a float64 sum that overflows; the caller then looks element by element."""
    total = float(logits.detach().sum(dtype=torch.float64))
    return total != total or total == math.inf


# --------------------------------------------------------------------------------------- greedy / sample


def filter_logits(
    logits: Tensor, *, temperature: float = 1.0, top_k: Optional[int] = None, top_p: Optional[float] = None
) -> Tensor:
    """Temperature, then top-k, then top-p (nucleus) filtering of logits (..., V).

    - temperature: ``logits / temperature``; < 1 sharpens the distribution, > 1 flattens it.
    - top_k: keep the ``k`` largest logits (exactly ``k``; ties at the boundary go to the lower index, as
      ``torch.topk`` breaks them). ``k >= V`` keeps everything.
    - top_p: keep the smallest set of most probable tokens whose probability (after temperature and top-k)
      reaches ``p`` (Holtzman et al., 2020): a token is dropped when the tokens more probable than it already
      hold mass >= p. The most probable token is always kept, and ``p = 1`` keeps everything.

    Dropped entries become ``-inf``, so ``softmax`` of the result is the sampling distribution.
    """
    _check_filters(temperature, top_k, top_p, allow_zero_temperature=False)
    if not isinstance(logits, Tensor) or not logits.is_floating_point() or logits.dim() < 1:
        given = (
            f"shape {tuple(logits.shape)} dtype {logits.dtype}" if isinstance(logits, Tensor) else type(logits).__name__
        )
        raise TypeError(f"logits must be a floating-point tensor (..., V), got {given}")
    return _filter(logits, temperature, top_k, top_p)


def _filter(logits: Tensor, temperature: float, top_k: Optional[int], top_p: Optional[float]) -> Tensor:
    """:func:`filter_logits` without the checks (the decoding loop checked the options once)."""
    if temperature != 1:
        logits = logits / temperature
    V = logits.size(-1)
    if top_k is not None and top_k < V:
        keep = logits.topk(top_k, dim=-1).indices  # (..., k)
        kept = torch.full_like(logits, -math.inf).scatter(-1, keep, logits.gather(-1, keep))
        logits = kept
    if top_p is not None and top_p < 1:
        sorted_logits, order = logits.sort(dim=-1, descending=True)  # (..., V)
        probs = torch.log_softmax(sorted_logits.float(), dim=-1).exp()
        # exclusive cumulative sum: the mass of the tokens strictly more probable than this one
        mass_before = torch.cumsum(probs, dim=-1) - probs
        mass_before[..., 0] = 0.0
        drop_sorted = mass_before >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, -math.inf)
    return logits


def greedy(
    decoder: Decoder,
    start_tokens: Tensor,
    state: Any,
    *,
    max_new_tokens: int,
    end_token: Optional[int] = None,
    pad_token: int = 0,
) -> Decoded:
    """The most probable token at every step (``argmax`` of the logits).

    Args:
        decoder: the model, speaking :class:`Decoder`.
        start_tokens: (B,) long, the first input of each row (e.g. the begin-of-sequence token).
        state: the decoder's state for these B rows (anything its ``step`` accepts, e.g. ``None``).
        max_new_tokens: the most tokens to generate per row.
        end_token: the token that finishes a row; ``None`` generates ``max_new_tokens`` tokens for every row.
        pad_token: fills the positions after a row's end.
    Returns:
        :class:`Decoded` (tokens (B, T), lengths (B,), scores (B,)).
    """
    _check_common(start_tokens, max_new_tokens, end_token, pad_token)
    return _decode(decoder, start_tokens, state, max_new_tokens, end_token, pad_token,
                   lambda logits, logp: logits.argmax(-1, keepdim=True))


def sample(
    decoder: Decoder,
    start_tokens: Tensor,
    state: Any,
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: Optional[int] = None,
    top_p: Optional[float] = None,
    end_token: Optional[int] = None,
    pad_token: int = 0,
    generator: Optional[torch.Generator] = None,
) -> Decoded:
    """Draw each token from ``softmax(filter_logits(logits, temperature, top_k, top_p))``.

    ``temperature=0`` is the limit of ever sharper distributions: it decodes greedily (argmax) and draws no
    random numbers. ``top_k=1`` is greedy as well. The returned ``scores`` are the model's own log-probabilities
    (temperature 1, unfiltered), not those of the sampling distribution.

    Args:
        decoder, start_tokens, state, max_new_tokens, end_token, pad_token: as in :func:`greedy`.
        temperature: >= 0; see :func:`filter_logits`.
        top_k: None or >= 1; see :func:`filter_logits`.
        top_p: None or in (0, 1]; see :func:`filter_logits`.
        generator: the random generator to draw from (on the logits' device), for reproducible samples;
            ``None`` uses torch's global one.
    Returns:
        :class:`Decoded` (tokens (B, T), lengths (B,), scores (B,)).
    """
    _check_common(start_tokens, max_new_tokens, end_token, pad_token)
    _check_filters(temperature, top_k, top_p, allow_zero_temperature=True)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be None or a torch.Generator, got {type(generator).__name__}")

    plain = temperature == 1 and top_k is None and (top_p is None or top_p >= 1)
    if plain and end_token is None:
        return _sample_to_length(decoder, start_tokens, state, max_new_tokens, generator)

    def choose(logits: Tensor, logp: Tensor) -> Tensor:
        if temperature == 0:
            return logits.argmax(-1, keepdim=True)
        if plain:  # the model's own distribution: its log-probabilities are at hand
            probs = logp.exp()  # (B, V)
        else:
            probs = torch.log_softmax(_filter(logits.float(), temperature, top_k, top_p), dim=-1).exp()  # (B, V)
        return torch.multinomial(probs, 1, generator=generator)  # (B, 1)

    return _decode(decoder, start_tokens, state, max_new_tokens, end_token, pad_token, choose)


def _decode(
    decoder: Decoder,
    start_tokens: Tensor,
    state: Any,
    max_new_tokens: int,
    end_token: Optional[int],
    pad_token: int,
    choose: Callable[[Tensor, Tensor], Tensor],
) -> Decoded:
    """The loop shared by greedy and sampling: one token per row per step, ``choose(logits, logp) -> tokens (B, 1)``."""
    if end_token is None:
        return _decode_to_length(decoder, start_tokens, state, max_new_tokens, choose)
    B = start_tokens.size(0)
    inputs = start_tokens.long()
    ended = torch.zeros(B, dtype=torch.bool, device=start_tokens.device)
    lengths = torch.zeros(B, dtype=torch.long, device=start_tokens.device)
    scores: Optional[Tensor] = None
    out: list[Tensor] = []
    for _ in range(max_new_tokens):
        logits, state = decoder.step(inputs, state)
        logp = _log_probs(logits, B, end_token)  # (B, V)
        token = choose(logits, logp).squeeze(1)  # (B,)
        token_logp = logp.gather(1, token.unsqueeze(1)).squeeze(1)  # (B,)
        scores = (0 if scores is None else scores) + token_logp.masked_fill(ended, 0.0)
        lengths += (~ended).long()
        out.append(token.masked_fill(ended, pad_token))
        ended = ended | (token == end_token)
        if bool(ended.all()):
            break
        inputs = token.masked_fill(ended, end_token)  # finished rows keep being fed a valid token
    return Decoded(torch.stack(out, dim=1), lengths, scores)  # tokens (B, T)


def _decode_to_length(decoder: Decoder, start_tokens: Tensor, state: Any, max_new_tokens: int,
                      choose: Callable[[Tensor, Tensor], Tensor]) -> Decoded:
    """:func:`_decode` without an end token: every row runs ``max_new_tokens`` steps, so nothing is masked and
    the per-token work is the model's step, the log-probabilities, the choice and one gather (generation at
    batch 1 is bound by these small operations).

    Non-finite logits (NaN, +inf) are caught without a check per token: they make their whole row of
    log-probabilities NaN, so sampling fails on them (checked then) and the argmax path leaves a NaN score
    (checked at the end)."""
    B = start_tokens.size(0)
    inputs = start_tokens.long()
    chosen: list[Tensor] = []
    token_logps: list[Tensor] = []
    for _ in range(max_new_tokens):
        logits, state = decoder.step(inputs, state)
        logp = _log_probs(logits, B, None, check_finite=False)  # (B, V)
        try:
            token = choose(logits, logp)  # (B, 1)
        except RuntimeError:  # torch.multinomial on NaN probabilities: say why, if that is why
            _check_finite(logits)
            raise
        token_logps.append(logp.gather(1, token))  # (B, 1)
        chosen.append(token)
        inputs = token.view(B)
    tokens = torch.cat(chosen, dim=1)  # (B, T)
    scores = torch.cat(token_logps, dim=1).sum(1)  # (B,)
    if bool(scores.isnan().any()):
        for logp in token_logps:
            _check_finite(logp)
    lengths = torch.full((B,), max_new_tokens, dtype=torch.long, device=tokens.device)
    return Decoded(tokens, lengths, scores)


def _sample_to_length(decoder: Decoder, start_tokens: Tensor, state: Any, max_new_tokens: int,
                      generator: Optional[torch.Generator]) -> Decoded:
    """Sampling from the model's own distribution (temperature 1, no filters) without an end token: the plain
    loop of softmax and multinomial, plus one gather for the scores.

    A row's score is the sum of log p(token) with p the softmax it was drawn from: a drawn token is never so
    improbable that p underflows, so this is log_softmax's value to float precision. NaN or +inf logits make
    their softmax row NaN, on which ``torch.multinomial`` fails; that failure is checked for them."""
    B = start_tokens.size(0)
    inputs = start_tokens.long()
    chosen: list[Tensor] = []
    token_probs: list[Tensor] = []
    for _ in range(max_new_tokens):
        logits, state = decoder.step(inputs, state)
        logits = _checked_logits(logits, B, None)  # (B, V)
        probs = torch.softmax(logits, dim=-1)  # (B, V)
        try:
            token = torch.multinomial(probs, 1, generator=generator)  # (B, 1)
        except RuntimeError:  # NaN probabilities: say why, if that is why
            _check_finite(logits)
            raise
        token_probs.append(probs.gather(1, token))  # (B, 1)
        chosen.append(token)
        inputs = token.view(B)
    tokens = torch.cat(chosen, dim=1)  # (B, T)
    lengths = torch.full((B,), max_new_tokens, dtype=torch.long, device=tokens.device)
    return Decoded(tokens, lengths, torch.cat(token_probs, dim=1).log().sum(1))


# ------------------------------------------------------------------------------------------ beam search


def length_penalty_factor(length: int, alpha: float) -> float:
    """GNMT's ``lp(Y) = ((5 + |Y|) / 6) ** alpha`` (Wu et al., 2016); a hypothesis ranks by ``log P / lp``."""
    return ((5.0 + length) / 6.0) ** alpha


class _Hypothesis(NamedTuple):
    rank_score: float  # log P / lp(|Y|)
    score: Tensor  # log P, 0-d
    tokens: Tensor  # (|Y|,)


def _add(pool: list[_Hypothesis], hyp: _Hypothesis, size: int) -> None:
    """Keep ``pool`` the ``size`` best hypotheses, best first (a stable sort: earlier ones win ties)."""
    pool.append(hyp)
    pool.sort(key=lambda h: -h.rank_score)
    del pool[size:]


def beam_search(
    decoder: Decoder,
    start_tokens: Tensor,
    state: Any,
    *,
    beam_width: int,
    max_new_tokens: int,
    end_token: Optional[int] = None,
    length_penalty: float = 0.0,
    num_return: int = 1,
    pad_token: int = 0,
) -> Decoded:
    """Beam search, batched over B·K rows (K = ``beam_width``), returning the ``num_return`` best per row.

    Algorithm. Each batch row keeps K alive hypotheses (beams) with their log-probabilities. At every step all
    K·V one-token extensions are scored. Of the K best extensions, those that end with ``end_token`` are set
    aside as finished hypotheses (as fairseq and Hugging Face do, an ending that does not rank among the
    K best extensions is dropped, which makes ``beam_width=1`` exactly greedy decoding); the K best
    extensions that do *not* end become the new beams, and ``decoder.reorder`` makes the state follow them.
    Each row keeps its K best finished hypotheses, ranked by ``log P(Y) / lp(Y)`` with GNMT's length penalty
    ``lp(Y) = ((5 + |Y|) / 6) ** length_penalty`` (|Y| counts the end token; 0 ranks by log P alone, > 0
    favours longer outputs). A row is done once it holds K finished hypotheses and no alive beam can beat the
    worst of them: log-probabilities only fall as a hypothesis grows, so ``log P(beam) / max lp`` over the
    lengths still reachable bounds every continuation. Decoding stops when every row is done or after
    ``max_new_tokens`` tokens, when the beams still alive join the finished ones as they are (without end token).

    The first step: all K beams of a row start from the same state and token, so only beam 0 is live
    (the others start at log-probability -inf); otherwise the K copies of the best token would fill the beam.
    Beams that stay at -inf (when K exceeds what the vocabulary can fill) never become results.

    Args:
        decoder: the model, speaking :class:`Decoder`; its ``reorder`` must accept index tensors that repeat rows.
        start_tokens: (B,) long, the first input of each row.
        state: the decoder's state for these B rows.
        beam_width: K >= 1, the alive hypotheses per row.
        max_new_tokens: the most tokens per hypothesis.
        end_token: the token that finishes a hypothesis; ``None`` decodes exactly ``max_new_tokens`` tokens.
        length_penalty: alpha of the GNMT length penalty.
        num_return: N in [1, K], how many of the best hypotheses to return per row.
        pad_token: fills the positions after a hypothesis's end.
    Returns:
        :class:`Decoded` with B·N rows, grouped by batch row and best first: row ``b * N + n`` is the
        n-th best hypothesis of batch row b (so for ``num_return=1`` it is (B, T) like the other decoders).
        ``scores`` are the raw log-probabilities; the ranking used ``log P / lp``. If a row has fewer than N
        hypotheses at all (a tiny vocabulary), the missing ones have length 0 and score -inf.
    """
    _check_common(start_tokens, max_new_tokens, end_token, pad_token)
    _check_beam_options(beam_width, num_return, length_penalty)

    B, K = start_tokens.size(0), beam_width
    rows = torch.arange(B, device=start_tokens.device)
    state = decoder.reorder(state, rows.repeat_interleave(K))  # (B,) rows -> (B*K,) rows, beam-minor
    inputs = start_tokens.long().repeat_interleave(K)  # (B*K,)
    history = inputs.new_empty((B, K, 0))  # (B, K, t) tokens of the alive beams
    beam_scores: Optional[Tensor] = None  # (B, K)
    pools: list[list[_Hypothesis]] = [[] for _ in range(B)]  # each row's finished hypotheses, best first
    done = [False] * B

    for t in range(max_new_tokens):
        logits, state = decoder.step(inputs, state)
        logp = _log_probs(logits, B * K, end_token).view(B, K, -1)  # (B, K, V)
        if beam_scores is None:  # first step: only beam 0 of each row is live
            beam_scores = torch.full((B, K), -math.inf, dtype=logp.dtype, device=logp.device)
            beam_scores[:, 0] = 0.0
        candidates = beam_scores.unsqueeze(-1) + logp  # (B, K, V) log P of every one-token extension
        if end_token is not None:
            lp = length_penalty_factor(t + 1, length_penalty)
            candidates = _set_aside_endings(candidates, history, pools, done, end_token, lp)
        beam_scores, beam_index, history = _extend_beams(candidates, history)
        if t == max_new_tokens - 1:
            break
        _mark_done_rows(done, pools, beam_scores, t + 1, max_new_tokens, length_penalty)
        if all(done):
            break
        state = decoder.reorder(state, (rows.unsqueeze(1) * K + beam_index).flatten())  # follow the beams
        inputs = history[:, :, -1].flatten()  # (B*K,) the tokens the beams just took

    _retire_alive_beams(pools, done, history, beam_scores, length_penalty)
    return _collect(pools, num_return, pad_token, beam_scores)


def _check_beam_options(beam_width: Any, num_return: Any, length_penalty: Any) -> None:
    _check_int("beam_width", beam_width, low=1)
    _check_int("num_return", num_return, low=1)
    if num_return > beam_width:
        raise ValueError(f"num_return must be <= beam_width={beam_width}, got {num_return}")
    if (
        isinstance(length_penalty, bool)
        or not isinstance(length_penalty, (int, float))
        or not math.isfinite(length_penalty)
    ):
        raise ValueError(f"length_penalty must be a finite number (GNMT's alpha), got {length_penalty!r}")


def _set_aside_endings(
    candidates: Tensor, history: Tensor, pools: list[list[_Hypothesis]], done: list[bool], end_token: int, lp: float
) -> Tensor:
    """Step phase 1: the endings among each row's K best extensions join the row's finished pool.

    candidates (B, K, V) log P of every extension, history (B, K, t) the alive beams' tokens, ``lp`` the
    length penalty of a hypothesis ending now. Returns the candidates with the end token masked out: the alive
    beams are the best extensions that do not end.
    """
    B, K, V = candidates.shape
    top_scores, top_flat = candidates.view(B, K * V).topk(K, dim=1)  # (B, K)
    finishing = (top_flat % V == end_token) & torch.isfinite(top_scores)
    flat_list, score_list = top_flat.tolist(), top_scores.detach().tolist()  # one device sync
    for b, j in finishing.nonzero().tolist():
        if done[b]:
            continue
        beam = flat_list[b][j] // V
        tokens = torch.cat([history[b, beam], history.new_tensor([end_token])])
        _add(pools[b], _Hypothesis(score_list[b][j] / lp, top_scores[b, j], tokens), K)
    return candidates.masked_fill(torch.arange(V, device=candidates.device) == end_token, -math.inf)


def _extend_beams(candidates: Tensor, history: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Step phase 2: each row's K best extensions become its beams.

    Returns the new beam scores (B, K) best first, which old beam each new one extends (B, K), and the
    new beams' tokens (B, K, t + 1).
    """
    B, K, V = candidates.shape
    beam_scores, flat = candidates.reshape(B, K * V).topk(K, dim=1)  # (B, K), best first
    beam_index = flat // V  # (B, K)
    token = flat % V  # (B, K)
    kept = history.gather(1, beam_index.unsqueeze(-1).expand(-1, -1, history.size(-1)))  # (B, K, t)
    return beam_scores, beam_index, torch.cat([kept, token.unsqueeze(-1)], dim=-1)


def _mark_done_rows(
    done: list[bool], pools: list[list[_Hypothesis]], beam_scores: Tensor, steps: int, max_new_tokens: int,
    length_penalty: float,
) -> None:
    """Step phase 3: a row is done once its pool is full and no alive beam can beat the pool's worst.

    log P only falls as a hypothesis grows, so ``log P(beam) / max lp`` over the lengths still reachable
    (one more token up to ``max_new_tokens``) bounds every continuation of a beam.
    """
    K = beam_scores.size(1)
    lp_max = max(length_penalty_factor(steps + 1, length_penalty),
                 length_penalty_factor(max_new_tokens, length_penalty))
    best_alive = beam_scores[:, 0].detach().tolist()
    for b in range(len(done)):
        if not done[b] and len(pools[b]) == K and best_alive[b] / lp_max <= pools[b][-1].rank_score:
            done[b] = True


def _retire_alive_beams(
    pools: list[list[_Hypothesis]], done: list[bool], history: Tensor, beam_scores: Tensor, length_penalty: float
) -> None:
    """The end: in rows still searching, the live beams join the finished pool as they are (truncated)."""
    K = beam_scores.size(1)
    lp = length_penalty_factor(history.size(-1), length_penalty)
    alive = beam_scores.detach().tolist()
    for b in range(len(pools)):
        if done[b]:
            continue
        for k in range(K):
            if math.isfinite(alive[b][k]):
                _add(pools[b], _Hypothesis(alive[b][k] / lp, beam_scores[b, k], history[b, k]), K)


def _collect(pools: list[list[_Hypothesis]], n: int, pad_token: int, like: Tensor) -> Decoded:
    """The n best hypotheses of every row, stacked into (B*n, T) padded tokens, lengths and scores."""
    chosen = [pool[i] if i < len(pool) else None for pool in pools for i in range(n)]
    width = max((len(h.tokens) for h in chosen if h is not None), default=0)
    tokens = torch.full((len(chosen), width), pad_token, dtype=torch.long, device=like.device)
    lengths = torch.zeros(len(chosen), dtype=torch.long, device=like.device)
    scores = torch.full((len(chosen),), -math.inf, dtype=like.dtype, device=like.device)
    for i, h in enumerate(chosen):
        if h is None:
            continue
        tokens[i, : len(h.tokens)] = h.tokens
        lengths[i] = len(h.tokens)
        scores[i] = h.score
    return Decoded(tokens, lengths, scores)
