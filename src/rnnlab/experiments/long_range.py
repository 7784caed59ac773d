"""Long-range experiments: which sequence model carries information across a long gap, at equal parameter budgets.

Three problems, each generated on the fly (:mod:`rnnlab.data.synthetic`), each at several sequence lengths:

- ``adding``: the adding problem (Hochreiter & Schmidhuber, 1997, §5.4): read out the sum of the two marked
  values at the last step. Solved when the test MSE is below 0.04 (predicting the mean scores 1/6 ≈ 0.167).
- ``copy``: the copy (memory) task (Arjovsky et al., 2016, §4.1): ten symbols, a gap of ``length`` blanks, then
  emit the ten symbols. Solved when the accuracy on them reaches 0.95 (remembering nothing scores 1/8).
- ``selective-copy``: the symbols at random positions among ``length`` blanks (Gu & Dao, 2023, §3.1): emit them in
  order after the delimiter. Solved at accuracy 0.95.

Every model is the same causal read-out (``ProbeModel``): the encoder reads the inputs left to right and a linear
head reads its outputs at the last step (adding) or the last ten steps (copy tasks). Only the encoder differs:
the Elman RNN (tanh), the IRNN (ReLU with identity recurrent weights, Le et al., 2015), LSTM, GRU, minGRU,
minLSTM, the fixed-window feed-forward model, the dilated causal CNN and the causal Transformer, each with the
hidden size that brings the whole model closest to one parameter budget (``gru-narrow`` is a GRU at the LSTM's
width, for the claim that a GRU matches an LSTM with fewer parameters).

Training: Adam, gradient clipping by norm, fresh batches every step, a fixed test set evaluated every
``eval_every`` steps; a run stops at the first evaluation that meets the solved threshold (its steps-to-solve),
or after ``steps`` steps, or after ``time_limit`` seconds. :func:`check_claims` turns the results into the
claims of the literature, each marked as holding, not holding or not tested at these budgets.
"""
from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnlab.data.synthetic import ADDING_BASELINE_MSE, adding_problem, copy_task, selective_copy_task
from rnnlab.structures.encoders import EncoderConfig, build_encoder

log = logging.getLogger(__name__)

COPY_LENGTH, SYMBOLS = 10, 8
VOCAB = 2 + SYMBOLS  # blank, delimiter, symbols
SOLVED_MSE, SOLVED_ACCURACY = 0.04, 0.95

MODELS: dict[str, EncoderConfig] = {
    "rnn": EncoderConfig(kind="rnn"),
    "irnn": EncoderConfig(kind="rnn-relu", recurrent_init="identity"),
    "lstm": EncoderConfig(kind="lstm"),
    "gru": EncoderConfig(kind="gru"),
    "gru-narrow": EncoderConfig(kind="gru"),  # the LSTM's hidden size, so 3/4 of its recurrent parameters
    "mingru": EncoderConfig(kind="mingru", num_layers=3),  # Feng et al. (2024) stack three
    "minlstm": EncoderConfig(kind="minlstm", num_layers=3),
    "window": EncoderConfig(kind="window", window=10, num_layers=2),
    "cnn": EncoderConfig(kind="cnn", num_layers=4, kernel_size=3, dilation_base=2, causal=True),
    "transformer": EncoderConfig(kind="transformer", num_layers=2, num_heads=4, causal=True, max_len=4096),
}
"""The models by name. Hidden sizes are set per budget by :func:`sized_model`."""


# -- problems --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Problem:
    """A long-range problem: how to make a batch, read the model, score it and when it counts as solved."""

    name: str
    input_size: int
    output_size: int
    read: int
    """How many final positions the head reads (1 for adding, COPY_LENGTH for the copy tasks)."""
    metric: str
    """mse (lower is better) or accuracy (higher is better)."""
    chance: float
    """The score of a model that remembers nothing."""
    make: Callable[[int, int, torch.Generator], tuple[Tensor, Tensor]]

    def solved(self, score: float) -> bool:
        return score < SOLVED_MSE if self.metric == "mse" else score >= SOLVED_ACCURACY

    def loss(self, pred: Tensor, y: Tensor) -> Tensor:
        if self.metric == "mse":
            return F.mse_loss(pred[:, -1, 0], y)
        return F.cross_entropy(pred.reshape(-1, pred.shape[-1]), y.reshape(-1))

    def score(self, pred: Tensor, y: Tensor) -> float:
        if self.metric == "mse":
            return F.mse_loss(pred[:, -1, 0], y).item()
        return (pred.argmax(-1) == y).float().mean().item()


def _adding(batch_size: int, length: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    return adding_problem(batch_size, length, generator=generator)


def _one_hot(make):
    def batch(batch_size: int, length: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        x, y = make(batch_size, length, symbols=SYMBOLS, copy_length=COPY_LENGTH, generator=generator)
        return F.one_hot(x, VOCAB).float(), y  # (B, T, V), (B, K)

    return batch


PROBLEMS: dict[str, Problem] = {
    "adding": Problem("adding", 2, 1, 1, "mse", ADDING_BASELINE_MSE, _adding),
    "copy": Problem("copy", VOCAB, VOCAB, COPY_LENGTH, "accuracy", 1 / SYMBOLS, _one_hot(copy_task)),
    "selective-copy": Problem("selective-copy", VOCAB, VOCAB, COPY_LENGTH, "accuracy", 1 / SYMBOLS,
                              _one_hot(selective_copy_task)),
}


# -- models ----------------------------------------------------------------------------------------------------
class ProbeModel(nn.Module):
    """inputs (B, T, I) → a causal encoder → a linear head over its outputs at the last ``read`` positions."""

    def __init__(self, encoder: EncoderConfig, input_size: int, output_size: int, read: int) -> None:
        super().__init__()
        self.encoder_config = encoder
        self.encoder = build_encoder(encoder, input_size)
        self.head = nn.Linear(self.encoder.output_size, output_size)
        self.read = read

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.encoder(x, None)  # (B, T, H)
        return self.head(out[:, -self.read:])  # (B, read, O)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def sized_model(name: str, problem: Problem, budget: int, *, lstm_hidden: Optional[int] = None) -> ProbeModel:
    """Model ``name`` with the hidden size that brings its parameter count closest to ``budget``.

    ``gru-narrow`` takes ``lstm_hidden`` (the LSTM's size at this budget) instead of searching.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; the models are: {', '.join(MODELS)}")
    config = MODELS[name]
    step = config.num_heads if config.kind == "transformer" else 1

    def build(h: int) -> ProbeModel:
        return ProbeModel(replace(config, hidden_size=h), problem.input_size, problem.output_size, problem.read)

    if name == "gru-narrow":
        if lstm_hidden is None:
            lstm_hidden = sized_model("lstm", problem, budget).encoder_config.hidden_size
        return build(lstm_hidden)
    hi = 1  # hidden = k * step; parameters grow with k: double k until over budget, then bisect
    while count_parameters(build(hi * step)) < budget:
        hi *= 2
    lo = hi // 2 + 1 if hi > 1 else 1
    while lo < hi:
        mid = (lo + hi) // 2
        if count_parameters(build(mid * step)) < budget:
            lo = mid + 1
        else:
            hi = mid
    candidates = [k for k in (lo - 1, lo) if k >= 1]
    best = min(candidates, key=lambda k: abs(count_parameters(build(k * step)) - budget))
    return build(best * step)


# -- one run ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunResult:
    problem: str
    length: int
    model: str
    hidden_size: int
    parameters: int
    metric: str
    score: float
    """The test score at the end of the run (mse or accuracy)."""
    best_score: float
    solved: bool
    steps: int
    """Steps trained."""
    steps_to_solve: Optional[int]
    seconds: float
    curve: list = field(default_factory=list)
    """[step, train loss, test score] at every evaluation."""


def train_one(
    model: ProbeModel, problem: Problem, length: int, *, steps: int, batch_size: int, lr: float, clip: float,
    eval_every: int, test_size: int, seed: int, time_limit: float = 0.0, name: str = "",
) -> RunResult:
    """Train ``model`` on ``problem`` at ``length``; stop when solved, after ``steps`` or after ``time_limit`` s."""
    torch.manual_seed(seed)
    test_gen = torch.Generator().manual_seed(10_000 + seed)
    x_test, y_test = problem.make(test_size, length, test_gen)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    better = min if problem.metric == "mse" else max
    curve, best, solved_at, score, losses = [], None, None, float("nan"), []
    t0 = time.perf_counter()
    step = 0
    while step < steps:
        model.train()
        x, y = problem.make(batch_size, length, gen)
        loss = problem.loss(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        step += 1
        losses.append(loss.item())
        out_of_time = time_limit > 0 and time.perf_counter() - t0 > time_limit
        if step % eval_every == 0 or step == steps or out_of_time:
            score = evaluate(model, problem, x_test, y_test)
            best = score if best is None else better(best, score)
            curve.append([step, float(sum(losses) / len(losses)), score])
            losses = []
            if problem.solved(score):
                solved_at = step
                break
            if out_of_time or not math.isfinite(score):
                break
    return RunResult(
        problem=problem.name, length=length, model=name, hidden_size=model.encoder_config.hidden_size,
        parameters=count_parameters(model), metric=problem.metric, score=score,
        best_score=best if best is not None else score, solved=solved_at is not None, steps=step,
        steps_to_solve=solved_at, seconds=time.perf_counter() - t0, curve=curve,
    )


@torch.no_grad()
def evaluate(model: ProbeModel, problem: Problem, x: Tensor, y: Tensor, chunk: int = 256) -> float:
    """The test score over ``x`` in chunks (a mean over rows for both metrics)."""
    model.eval()
    total = 0.0
    for i in range(0, x.shape[0], chunk):
        xs, ys = x[i:i + chunk], y[i:i + chunk]
        total += problem.score(model(xs), ys) * xs.shape[0]
    return total / x.shape[0]


# -- the grid --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LongRangeConfig:
    """The grid of the long-range experiment: problems × lengths × models, and the training budget."""

    problems: tuple[str, ...] = ("adding", "copy", "selective-copy")
    """Any of adding, copy, selective-copy."""
    lengths: tuple[int, ...] = (50, 100, 200, 500, 1000)
    """Sequence lengths (adding: T; copy: the gap; selective copy: the span the symbols are spread over)."""
    models: tuple[str, ...] = tuple(MODELS)
    """Any of rnn, irnn, lstm, gru, gru-narrow, mingru, minlstm, window, cnn, transformer."""
    parameters: int = 20_000
    """The parameter budget every model is sized to (gru-narrow excepted)."""
    steps: int = 3000
    """The most Adam steps per run (a run stops early once solved)."""
    batch_size: int = 64
    """Fresh sequences per step."""
    lr: float = 3e-3
    """Adam's learning rate, the same for every model."""
    clip: float = 1.0
    """Gradient clipping by global norm (0 turns it off)."""
    eval_every: int = 100
    """Steps between evaluations on the fixed test set (a run stops at the first that is solved)."""
    test_size: int = 512
    """Sequences in the fixed test set."""
    time_limit: float = 0.0
    """Seconds per run at most (0: no limit)."""
    seed: int = 0
    """Seeds the weights, the training batches and the test set."""

    def __post_init__(self) -> None:
        for p in self.problems:
            if p not in PROBLEMS:
                raise ValueError(f"unknown problem {p!r}; the problems are: {', '.join(PROBLEMS)}")
        for m in self.models:
            if m not in MODELS:
                raise ValueError(f"unknown model {m!r}; the models are: {', '.join(MODELS)}")
        if not self.problems or not self.lengths or not self.models:
            raise ValueError("the grid needs at least one problem, one length and one model")
        for name in ("parameters", "steps", "batch_size", "eval_every", "test_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"--{name} must be a positive integer, got {value!r}")
        for n in self.lengths:
            if isinstance(n, bool) or not isinstance(n, int) or n < COPY_LENGTH:
                raise ValueError(f"every length must be an integer of at least {COPY_LENGTH}, got {n!r}")


QUICK = LongRangeConfig(problems=("adding", "copy"), lengths=(25, 100), parameters=6_000, steps=2000, batch_size=64,
                        lr=1e-2, eval_every=50, test_size=256, time_limit=0.0)
"""The ``--quick`` grid (about 8 minutes on one core of a quiet machine): adding and copy at two lengths, a small
budget, runs of at most 2,000 steps and no time limit, so that the results do not depend on the machine's speed or
load."""


def run_grid(config: LongRangeConfig, *, on_result: Optional[Callable[[RunResult], None]] = None) -> list[RunResult]:
    """Every problem × length × model of ``config``; ``on_result`` is called after each run."""
    results = []
    for problem_name in config.problems:
        problem = PROBLEMS[problem_name]
        lstm_hidden = sized_model("lstm", problem, config.parameters).encoder_config.hidden_size
        for length in config.lengths:
            for name in config.models:
                torch.manual_seed(config.seed)
                model = sized_model(name, problem, config.parameters, lstm_hidden=lstm_hidden)
                result = train_one(
                    model, problem, length, steps=config.steps, batch_size=config.batch_size, lr=config.lr,
                    clip=config.clip, eval_every=config.eval_every, test_size=config.test_size, seed=config.seed,
                    time_limit=config.time_limit, name=name,
                )
                results.append(result)
                if on_result is not None:
                    on_result(result)
    return results


# -- claims ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Claim:
    claim: str
    holds: Optional[bool]
    """True, False, or None when the grid does not test it (a model or length missing)."""
    evidence: str


def _index(results: Iterable[RunResult]) -> dict[tuple[str, int, str], RunResult]:
    return {(r.problem, r.length, r.model): r for r in results}


def _describe(r: RunResult) -> str:
    return f"{r.model} {r.metric} {r.score:.3f}" + (f" (solved at step {r.steps_to_solve})" if r.solved else "")


def check_claims(results: list[RunResult]) -> list[Claim]:
    """The literature's claims, checked on ``results`` (at the longest length each problem was run at)."""
    by = _index(results)
    problems = sorted({r.problem for r in results}, key=list(PROBLEMS).index)
    claims = []

    def claim(text: str, models: list[str], test: Callable[[dict[str, RunResult]], bool]) -> None:
        verdicts, evidence = [], []
        for p in problems:
            longest = max(r.length for r in results if r.problem == p)
            runs = {m: by.get((p, longest, m)) for m in models}
            if any(r is None for r in runs.values()):
                continue
            verdicts.append(test(runs))
            evidence.append(f"{p} T={longest}: " + ", ".join(_describe(r) for r in runs.values()))
        holds = None if not verdicts else all(verdicts)
        claims.append(Claim(text, holds, "; ".join(evidence) or "not run"))

    claim("a plain RNN (tanh) forgets at long range: unsolved at the longest length",
          ["rnn"], lambda r: not r["rnn"].solved)
    for gated in ("lstm", "gru"):
        claim(f"{MODELS[gated].kind.upper()} keeps the information where the plain RNN loses it",
              ["rnn", gated], lambda r, g=gated: r[g].solved or (not r["rnn"].solved and _beats(r[g], r["rnn"])))
    claim("a GRU matches an LSTM with fewer parameters (gru-narrow: the LSTM's width)",
          ["lstm", "gru-narrow"], lambda r: r["gru-narrow"].solved >= r["lstm"].solved and
          r["gru-narrow"].parameters < r["lstm"].parameters)
    claim(f"a fixed window ({MODELS['window'].window} steps) cannot reach past its size",
          ["window"], lambda r: not r["window"].solved)
    claim("attention reaches any distance in one step: the Transformer solves the longest length",
          ["transformer"], lambda r: r["transformer"].solved)
    return claims


def _beats(a: RunResult, b: RunResult) -> bool:
    """a's final score is better than b's by a clear margin (a tenth of the chance score)."""
    margin = 0.1 * (ADDING_BASELINE_MSE if a.metric == "mse" else 1 / SYMBOLS)
    return a.score < b.score - margin if a.metric == "mse" else a.score > b.score + margin


# -- output ----------------------------------------------------------------------------------------------------
def table(results: list[RunResult]) -> str:
    """A plain-text table: one row per run."""
    head = f"{'problem':<15}{'T':>6}  {'model':<12}{'H':>5}{'params':>8}  {'score':>8}  {'solved at':>9}  {'s':>6}"
    lines = [head, "-" * len(head)]
    for r in results:
        at = str(r.steps_to_solve) if r.solved else "-"
        lines.append(f"{r.problem:<15}{r.length:>6}  {r.model:<12}{r.hidden_size:>5}{r.parameters:>8}  "
                     f"{r.score:>8.3f}  {at:>9}  {r.seconds:>6.1f}")
    return "\n".join(lines)


def write_results(results: list[RunResult], config: LongRangeConfig, out: Path) -> dict:
    """results.json, table.txt and long_range.png in ``out``; returns the JSON document."""
    out.mkdir(parents=True, exist_ok=True)
    doc = {
        "config": asdict(config),
        "results": [asdict(r) for r in results],
        "claims": [asdict(c) for c in check_claims(results)],
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    (out / "results.json").write_text(json.dumps(doc, indent=1), encoding="utf-8")
    (out / "table.txt").write_text(table(results) + "\n", encoding="utf-8")
    plot(results, out / "long_range.png")
    return doc


def plot(results: list[RunResult], path: Path) -> None:
    """Per problem: the final score against the length (one line per model), and the steps to solve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    problems = sorted({r.problem for r in results}, key=list(PROBLEMS).index)
    models = [m for m in MODELS if any(r.model == m for r in results)]
    fig, axes = plt.subplots(2, len(problems), figsize=(5 * len(problems), 7.5), squeeze=False)
    colours = plt.get_cmap("tab10")
    for j, p in enumerate(problems):
        problem = PROBLEMS[p]
        for i, m in enumerate(models):
            runs = sorted((r for r in results if r.problem == p and r.model == m), key=lambda r: r.length)
            if not runs:
                continue
            lengths = [r.length for r in runs]
            axes[0, j].plot(lengths, [r.score for r in runs], "o-", color=colours(i), label=m)
            solved = [(r.length, r.steps_to_solve) for r in runs if r.solved]
            if solved:
                axes[1, j].plot(*zip(*solved), "o-", color=colours(i), label=m)
        axes[0, j].axhline(problem.chance, color="grey", ls=":", label="chance")
        threshold = SOLVED_MSE if problem.metric == "mse" else SOLVED_ACCURACY
        axes[0, j].axhline(threshold, color="black", ls="--", lw=0.8, label="solved")
        axes[0, j].set(title=p, xscale="log", xlabel="sequence length", ylabel=f"test {problem.metric}")
        axes[1, j].set(xscale="log", xlabel="sequence length", ylabel="steps to solve (solved runs)")
    axes[0, -1].legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


__all__ = [
    "Claim", "LongRangeConfig", "MODELS", "PROBLEMS", "ProbeModel", "QUICK", "RunResult", "check_claims",
    "run_grid", "sized_model", "table", "train_one", "write_results",
]
