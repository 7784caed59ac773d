"""CTC (Graves et al., 2006): the loss over per-frame scores and its decoders, greedy and prefix beam search.

A CTC head scores C = 1 + |alphabet| classes per frame, class 0 the blank. A labelling y is read off a frame
path π by collapsing repeats and then dropping blanks (B(π)); p(y | x) = Σ_{π: B(π) = y} Π_t p(π_t | x).

- :func:`ctc_loss`: −log p(y | x) per utterance, averaged over the batch (``F.ctc_loss`` with ``reduction="mean"``
  divides by the target lengths first; here each utterance counts once: ``reduction="sum"`` / B).
- :func:`greedy_decode`: B(argmax path), the best path, not the best labelling.
- :func:`prefix_beam_search`: the labellings with the highest p(y | x) found by keeping the ``beam_size`` best
  prefixes, each with its probability of ending in a blank and in a non-blank (Hannun et al., 2014,
  "First-pass large vocabulary continuous speech recognition using bi-directional recurrent DNNs", Algorithm 1,
  without a language model). With a beam as wide as the number of prefixes it is exact.
"""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Optional

import torch.nn.functional as F
from torch import Tensor

NEG_INF = float("-inf")


def ctc_loss(logits: Tensor, lengths: Tensor, targets: Tensor, target_lengths: Tensor, *, blank: int = 0) -> Tensor:
    """Mean over the batch of −log p(y | x): logits (B, T, C), lengths (B,), targets (B, S) padded, target_lengths
    (B,). Impossible alignments (a target longer than its frames allow) count zero instead of infinity."""
    log_probs = logits.float().log_softmax(-1).transpose(0, 1)  # (T, B, C)
    loss = F.ctc_loss(log_probs, targets, lengths, target_lengths, blank=blank, reduction="sum", zero_infinity=True)
    return loss / logits.shape[0]


def collapse(path: Sequence[int], blank: int = 0) -> list[int]:
    """B(π): merge repeated classes, then drop blanks."""
    out, previous = [], None
    for c in path:
        if c != previous and c != blank:
            out.append(int(c))
        previous = c
    return out


def min_frames(labels: Sequence[int]) -> int:
    """The fewest frames that can emit ``labels``: one per label plus a blank between each repeated pair."""
    return len(labels) + sum(a == b for a, b in zip(labels, labels[1:]))


def greedy_decode(logits: Tensor, lengths: Optional[Tensor] = None, *, blank: int = 0) -> list[list[int]]:
    """The collapsed best path of each utterance: logits (B, T, C) -> B lists of class ids (no blanks)."""
    best = logits.argmax(-1).cpu()  # (B, T)
    n = [best.shape[1]] * best.shape[0] if lengths is None else lengths.tolist()
    return [collapse(best[b, : n[b]].tolist(), blank) for b in range(best.shape[0])]


def _add(a: float, b: float) -> float:
    """log(e^a + e^b)."""
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    m = max(a, b)
    return m + math.log1p(math.exp(-abs(a - b)))


def prefix_beam_search(log_probs: Tensor, *, beam_size: int = 8, blank: int = 0) -> list[tuple[tuple[int, ...], float]]:
    """The ``beam_size`` most probable labellings of one utterance with their log p(y | x), best first.

    log_probs (T, C): per-frame log probabilities. Each prefix ℓ carries p_b (paths so far ending in a blank) and
    p_nb (ending in ℓ's last class); at each frame a blank extends both into p_b(ℓ); class c ≠ last(ℓ) extends
    both into p_nb(ℓ + c); c = last(ℓ) extends p_nb into p_nb(ℓ) (a repeat collapses) and only p_b into
    p_nb(ℓ + c) (a repeated letter needs a blank between).
    """
    if log_probs.dim() != 2:
        raise ValueError(f"log_probs must have shape (T, C), got {tuple(log_probs.shape)}")
    if beam_size < 1:
        raise ValueError(f"beam_size must be a positive integer, got {beam_size!r}")
    lp = log_probs.double().cpu().tolist()
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, NEG_INF)}
    for frame in lp:
        nxt: dict[tuple[int, ...], list[float]] = defaultdict(lambda: [NEG_INF, NEG_INF])
        for prefix, (p_b, p_nb) in beams.items():
            total = _add(p_b, p_nb)
            last = prefix[-1] if prefix else None
            for c, p in enumerate(frame):
                if p == NEG_INF:
                    continue
                if c == blank:
                    entry = nxt[prefix]
                    entry[0] = _add(entry[0], total + p)
                    continue
                extended = nxt[prefix + (c,)]
                if c == last:
                    extended[1] = _add(extended[1], p_b + p)
                    same = nxt[prefix]
                    same[1] = _add(same[1], p_nb + p)
                else:
                    extended[1] = _add(extended[1], total + p)
        live = [kv for kv in nxt.items() if _add(*kv[1]) > NEG_INF]  # drop prefixes no path reaches
        scored = sorted(live, key=lambda kv: _add(*kv[1]), reverse=True)[:beam_size]
        beams = {prefix: (v[0], v[1]) for prefix, v in scored}
    return sorted(((prefix, _add(*v)) for prefix, v in beams.items()), key=lambda kv: kv[1], reverse=True)


def beam_decode(logits: Tensor, lengths: Optional[Tensor] = None, *, beam_size: int = 8,
                blank: int = 0) -> list[list[int]]:
    """The best labelling of each utterance by :func:`prefix_beam_search`: logits (B, T, C) -> B lists of ids."""
    log_probs = logits.float().log_softmax(-1).cpu()
    n = [log_probs.shape[1]] * log_probs.shape[0] if lengths is None else lengths.tolist()
    return [list(prefix_beam_search(log_probs[b, : n[b]], beam_size=beam_size, blank=blank)[0][0])
            for b in range(log_probs.shape[0])]


__all__ = ["ctc_loss", "collapse", "min_frames", "greedy_decode", "prefix_beam_search", "beam_decode"]
