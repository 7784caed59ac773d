"""Linear-chain conditional random field: log-likelihood by the forward algorithm, decoding by Viterbi.

Lafferty, McCallum and Pereira (2001), "Conditional Random Fields: Probabilistic Models for Segmenting and
Labeling Sequence Data", ICML, §3-4; in the neural form of Lample et al. (2016), "Neural Architectures for
Named Entity Recognition", NAACL, §2.2, where a network gives the emission scores and the CRF adds
transition scores between neighbouring tags. Both recursions run in log space (logsumexp, max) over all
rows and tags at once; the only Python loop is over time.

Constraints (:meth:`LinearChainCRF.constrain`, :func:`allowed_transitions`): a tag scheme such as BIO forbids
some transitions (``O -> I-PER``, a start on ``I-PER``). Forbidden transitions score :data:`FORBIDDEN`, in the
likelihood and in Viterbi alike, so the model never spends probability on them and Viterbi never outputs
them (as AllenNLP's ``ConditionalRandomField(constraints=...)`` does). The masks are buffers of the module,
saved with its weights.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from rnnlab.nn._checks import check_dtype_match, check_lengths, check_tensor
from rnnlab.nn.masking import lengths_to_mask, to_device

__all__ = ["LinearChainCRF", "allowed_transitions", "FORBIDDEN"]

FORBIDDEN = -1e4
"""The score of a forbidden transition: finite, so that log Z and its gradients stay finite even for a tag no
path may reach, and far below any sum of emission scores a network produces, so no best path takes it."""


class LinearChainCRF(nn.Module):
    """A linear-chain CRF over K tags (Lafferty et al., 2001; Lample et al., 2016, §2.2).

    Symbols: E (B, T, K) the emission scores, E_t[j] the score of tag j at step t; A = ``transitions`` (K, K),
    A[i, j] the score of going from tag i to tag j; π = ``start_transitions`` (K,), ω = ``end_transitions`` (K,).
    For a row of length L and tags y_1 … y_L,

        s(y) = π[y_1] + Σ_{t=1}^{L} E_t[y_t] + Σ_{t=2}^{L} A[y_{t-1}, y_t] + ω[y_L]
        log p(y | E) = s(y) − log Z,   log Z = logsumexp over all K^L sequences y' of s(y')

    log Z by the forward algorithm, α_t (B, K):

        α_1[j] = π[j] + E_1[j]
        α_t[j] = logsumexp_i(α_{t-1}[i] + A[i, j]) + E_t[j]            t = 2 … L
        log Z  = logsumexp_j(α_L[j] + ω[j])

    and the best sequence by Viterbi, the same recursion with max for logsumexp and backpointers ψ_t:

        δ_1 = α_1,  δ_t[j] = max_i(δ_{t-1}[i] + A[i, j]) + E_t[j],  ψ_t[j] = argmax_i(…)
        y_L* = argmax_j(δ_L[j] + ω[j]),  y_{t-1}* = ψ_t[y_t*]

    Past a row's length α and δ are carried unchanged (and ψ is the identity), so padding changes nothing.
    The scores start uniform in [−0.1, 0.1].

    Constraints: the boolean buffers ``allowed_start`` (K,), ``allowed_transitions`` (K, K) and ``allowed_end``
    (K,) (all True unless :meth:`constrain` sets them) replace π, A and ω by :data:`FORBIDDEN` where False.
    """

    def __init__(self, num_tags: int) -> None:
        super().__init__()
        if not isinstance(num_tags, int) or isinstance(num_tags, bool) or num_tags < 1:
            raise ValueError(f"num_tags must be a positive integer, got {num_tags!r}")
        self.num_tags = num_tags
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags))  # A[i, j]: from i to j
        self.start_transitions = nn.Parameter(torch.empty(num_tags))  # π
        self.end_transitions = nn.Parameter(torch.empty(num_tags))  # ω
        self.register_buffer("allowed_start", torch.ones(num_tags, dtype=torch.bool))
        self.register_buffer("allowed_transitions", torch.ones(num_tags, num_tags, dtype=torch.bool))
        self.register_buffer("allowed_end", torch.ones(num_tags, dtype=torch.bool))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for p in (self.transitions, self.start_transitions, self.end_transitions):
            nn.init.uniform_(p, -0.1, 0.1)

    def extra_repr(self) -> str:
        constrained = not bool(self.allowed_transitions.all() and self.allowed_start.all() and self.allowed_end.all())
        return f"num_tags={self.num_tags}" + (", constrained" if constrained else "")

    def constrain(self, transitions: Tensor, *, start: Optional[Tensor] = None, end: Optional[Tensor] = None) -> None:
        """Allow only the transitions where ``transitions`` (K, K) bool is True (from i to j at [i, j]), only
        first tags where ``start`` (K,) is True and last tags where ``end`` (K,) is True (None = all)."""
        K = self.num_tags
        for name, mask, shape in (("transitions", transitions, (K, K)), ("start", start, (K,)), ("end", end, (K,))):
            if mask is None:
                continue
            if not isinstance(mask, Tensor) or mask.dtype != torch.bool or tuple(mask.shape) != shape:
                raise ValueError(f"{name} must be a bool tensor of shape {shape}, got "
                                 f"{tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__}")
        if start is not None and not bool(start.any()) or end is not None and not bool(end.any()):
            raise ValueError("the constraints allow no first tag or no last tag: no sequence would be possible")
        self.allowed_transitions.copy_(transitions)
        if start is not None:
            self.allowed_start.copy_(start)
        if end is not None:
            self.allowed_end.copy_(end)

    def _scores(self) -> tuple[Tensor, Tensor, Tensor]:
        """(π, A, ω) with the forbidden entries at FORBIDDEN."""
        return (
            self.start_transitions.masked_fill(~self.allowed_start, FORBIDDEN),
            self.transitions.masked_fill(~self.allowed_transitions, FORBIDDEN),
            self.end_transitions.masked_fill(~self.allowed_end, FORBIDDEN),
        )

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # weights saved before the constraint buffers existed load as unconstrained
        for name in ("allowed_start", "allowed_transitions", "allowed_end"):
            state_dict.setdefault(prefix + name, getattr(self, name).clone().fill_(True))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # -- checks -------------------------------------------------------------------------------------------

    def _check(self, emissions: Tensor, lengths) -> tuple[Tensor, Tensor]:
        """Validate, and return (lengths (B,) on the emissions' device, mask (B, T) bool of real steps)."""
        K = self.num_tags
        check_tensor("emissions", emissions)
        if emissions.dim() != 3:
            raise ValueError(f"emissions must have shape (B, T, K) with K={K}, got shape {tuple(emissions.shape)}")
        if emissions.shape[-1] != K:
            raise ValueError(f"emissions must have K={K} tag scores in its last dimension, got shape "
                             f"{tuple(emissions.shape)}")
        check_dtype_match("emissions", emissions, self.transitions)
        B, T, _ = emissions.shape
        if T == 0:
            raise ValueError(f"emissions must have at least one time step, got shape {tuple(emissions.shape)}")
        lengths = check_lengths(lengths, B, T)
        device = emissions.device
        if lengths is None:
            lengths = torch.full((B,), T, dtype=torch.long, device=device)
        else:
            lengths = to_device(lengths, device)
        mask = lengths_to_mask(lengths, T)  # (B, T)
        return lengths, mask

    def _check_tags(self, tags, emissions: Tensor, mask: Tensor) -> Tensor:
        B, T, K = emissions.shape
        if not isinstance(tags, Tensor):
            raise TypeError(f"tags must be a torch.Tensor of shape ({B}, {T}), got {type(tags).__name__}")
        if tags.dtype.is_floating_point or tags.dtype == torch.bool or tags.is_complex():
            raise TypeError(f"tags must be an integer tensor, got dtype {tags.dtype}")
        if tuple(tags.shape) != (B, T):
            raise ValueError(f"tags must have shape (B, T) = ({B}, {T}) like emissions, got shape {tuple(tags.shape)}")
        tags = tags.to(emissions.device, torch.long)
        real = tags[mask]
        if real.numel() and (int(real.min()) < 0 or int(real.max()) >= K):
            raise ValueError(
                f"tags must lie in [0, K={K}) at real steps, got min {int(real.min())} and max {int(real.max())}"
            )
        # padded steps may hold anything (e.g. an ignore index); they are masked out, but must index safely
        return tags.masked_fill(~mask, 0)

    # -- likelihood ------------------------------------------------------------------------------------------

    def score(self, emissions: Tensor, tags: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
        """s(y): the unnormalised log score of ``tags`` (B, T) -> (B,)."""
        lengths, mask = self._check(emissions, lengths)
        tags = self._check_tags(tags, emissions, mask)
        return self._score(emissions, tags, lengths, mask)

    def _score(self, emissions: Tensor, tags: Tensor, lengths: Tensor, mask: Tensor) -> Tensor:
        B = emissions.shape[0]
        start, transitions, end = self._scores()
        m = mask.to(emissions.dtype)  # (B, T)
        e = emissions.gather(-1, tags.unsqueeze(-1)).squeeze(-1)  # (B, T): E_t[y_t]
        a = transitions[tags[:, :-1], tags[:, 1:]]  # (B, T-1): A[y_{t-1}, y_t]
        last = tags[torch.arange(B, device=tags.device), lengths - 1]  # (B,): y_L
        return start[tags[:, 0]] + (e * m).sum(1) + (a * m[:, 1:]).sum(1) + end[last]  # (B,)

    def log_partition(self, emissions: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
        """log Z by the forward algorithm: emissions (B, T, K) -> (B,)."""
        _, mask = self._check(emissions, lengths)
        return self._log_partition(emissions, mask)

    def _log_partition(self, emissions: Tensor, mask: Tensor) -> Tensor:
        T = emissions.shape[1]
        start, transitions, end = self._scores()
        alpha = start + emissions[:, 0]  # (B, K): α_1
        for t in range(1, T):
            # (B, K, 1) + (K, K) -> (B, K, K) over (i, j); logsumexp over i
            nxt = torch.logsumexp(alpha.unsqueeze(2) + transitions, dim=1) + emissions[:, t]  # (B, K)
            alpha = torch.where(mask[:, t : t + 1], nxt, alpha)  # carried unchanged past the length
        return torch.logsumexp(alpha + end, dim=1)  # (B,)

    def log_likelihood(self, emissions: Tensor, tags: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
        """log p(y | E) = s(y) − log Z: emissions (B, T, K), tags (B, T) integers, lengths (B,) -> (B,)."""
        lengths, mask = self._check(emissions, lengths)
        tags = self._check_tags(tags, emissions, mask)
        return self._score(emissions, tags, lengths, mask) - self._log_partition(emissions, mask)

    def nll(self, emissions: Tensor, tags: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
        """The training loss: −mean over rows of log p(y | E), a scalar."""
        return -self.log_likelihood(emissions, tags, lengths).mean()

    # -- decoding --------------------------------------------------------------------------------------------

    @torch.no_grad()
    def viterbi(self, emissions: Tensor, lengths: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        """The best tag sequence of every row: emissions (B, T, K) ->
        (best_tags (B, T) long, 0 past each length; best_scores (B,) = s(y*))."""
        lengths, mask = self._check(emissions, lengths)
        B, T, K = emissions.shape
        identity = torch.arange(K, device=emissions.device).expand(B, K)  # ψ past the length: stay on the tag
        start, transitions, end = self._scores()
        delta = start + emissions[:, 0]  # (B, K): δ_1
        backpointers = []  # ψ_2 … ψ_T, each (B, K)
        for t in range(1, T):
            best, psi = (delta.unsqueeze(2) + transitions).max(dim=1)  # (B, K) each: max over i
            real = mask[:, t : t + 1]  # (B, 1)
            delta = torch.where(real, best + emissions[:, t], delta)
            backpointers.append(torch.where(real, psi, identity))
        best_scores, y = (delta + end).max(dim=1)  # (B,) each: y_T*, which is y_L* by the identity ψ
        tags = [y]
        for psi in reversed(backpointers):
            y = psi.gather(1, y.unsqueeze(1)).squeeze(1)  # (B,): y_{t-1}* = ψ_t[y_t*]
            tags.append(y)
        best_tags = torch.stack(tags[::-1], dim=1)  # (B, T)
        return best_tags.masked_fill(~mask, 0), best_scores

    def decode(self, emissions: Tensor, lengths: Optional[Tensor] = None) -> list[list[int]]:
        """The best tag sequence of every row as a list of its L tags (Viterbi)."""
        best_tags, _ = self.viterbi(emissions, lengths)
        lengths, _ = self._check(emissions, lengths)
        return [row[:n].tolist() for row, n in zip(best_tags.cpu(), lengths.tolist())]


# -- tag schemes ---------------------------------------------------------------------------------------------

SCHEMES = ("bio", "bioes")


def allowed_transitions(tags: list[str], scheme: str) -> tuple[Tensor, Tensor, Tensor]:
    """(start (K,), transitions (K, K), end (K,)) bool masks of what ``scheme`` allows for the tag names ``tags``
    (``O``, ``B-X``, ``I-X`` and, for bioes, ``E-X``, ``S-X``), for :meth:`LinearChainCRF.constrain`.

    bio (IOB2): ``I-X`` only after ``B-X`` or ``I-X`` (so never first). bioes: ``I-X``/``E-X`` only after
    ``B-X``/``I-X``; after ``B-X``/``I-X`` only ``I-X``/``E-X``; ``B``/``S``/``O`` only after ``E``/``S``/``O``
    or first; the last tag is ``E``, ``S`` or ``O``. A tag with another prefix (``<unk>``...) is allowed anywhere.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    parts = [_split(t) for t in tags]
    K = len(tags)
    start = torch.tensor([_allowed(scheme, None, p) for p in parts], dtype=torch.bool)
    end = torch.tensor([_allowed(scheme, p, None) for p in parts], dtype=torch.bool)
    trans = torch.tensor([[_allowed(scheme, a, b) for b in parts] for a in parts], dtype=torch.bool).view(K, K)
    return start, trans, end


def _split(tag: str) -> tuple[str, str]:
    """'B-PER' -> ('B', 'PER'); 'O' -> ('O', ''); anything else -> ('?', tag)."""
    if tag == "O":
        return "O", ""
    if len(tag) > 2 and tag[1] == "-" and tag[0] in "BIES":
        return tag[0], tag[2:]
    return "?", tag


def _allowed(scheme: str, prev: Optional[tuple[str, str]], nxt: Optional[tuple[str, str]]) -> bool:
    """May ``nxt`` follow ``prev``? (None: the start before the first tag, or the end after the last.)"""
    if prev is not None and prev[0] == "?" or nxt is not None and nxt[0] == "?":
        return True
    inside = prev is not None and prev[0] in ("B", "I")  # an entity is open
    if scheme == "bio":
        if nxt is None or nxt[0] != "I":
            return True
        return inside and prev[1] == nxt[1]
    # bioes: an open entity (after B or I) must continue with I or E of its type
    if inside:
        return nxt is not None and nxt[0] in ("I", "E") and nxt[1] == prev[1]
    return nxt is None or nxt[0] in ("B", "S", "O")
