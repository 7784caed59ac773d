"""The JAX contenders of benchmarks/peers.py, each under jax.jit with gradients by jax.grad (compiled in setup,
so compilation is never timed):

- "flax": Flax linen's own cells in ``nn.RNN`` (which runs ``nn.scan``): OptimizedLSTMCell (one fused gate
  product), GRUCell, SimpleCell (tanh), as a Flax user writes them;
- "jax scan": the same recurrences written by hand as a JAX user who cares about speed would: the input
  product of every step hoisted into one matrix product, the recurrence in ``jax.lax.scan``
  (torch.nn's gate order and GRU equations, reset gate applied after the recurrent product).

A training step is the gradient of outputs.mean() with respect to every parameter; inference the forward.
The streaming case steps B sessions together with a jitted cell step (``cell.apply``), state fed back.
"""
from __future__ import annotations

from collections.abc import Callable


def missing() -> str:
    try:
        import flax.linen  # noqa: F401
        import jax  # noqa: F401
    except ImportError as e:
        return f"not installed ({e.name})"
    return ""


def versions() -> dict:
    import flax
    import jax
    return {"jax": jax.__version__, "flax": flax.__version__, "jax devices": str(jax.devices())}


def setup_threads(n: int) -> None:
    """XLA is bounded by the process's affinity mask and XLA_FLAGS, set before import (peers_worker.py)."""


def _cell(kind: str, H: int):
    import flax.linen as nn
    return {"LSTM": nn.OptimizedLSTMCell, "GRU": nn.GRUCell, "RNN": nn.SimpleCell}[kind](features=H)


def _block(fn):
    import jax

    def run():
        jax.block_until_ready(fn())

    return run


def build(case: dict) -> dict[str, Callable[[], None]]:
    if case["kind"] == "stream":
        return _build_stream(case)
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    cell, B, T, I, H = case["cell"], case["B"], case["T"], case["I"], case["H"]
    key = jax.random.PRNGKey(0)
    x = jax.random.normal(key, (B, T, I), jnp.float32)
    model = nn.RNN(_cell(cell, H))
    params = model.init(key, x)
    scan_params = _scan_params(key, cell, I, H)
    forwards = {"flax": lambda p, x: model.apply(p, x), "jax scan": lambda p, x: _scan_forward(cell, p, x)}
    fns = {}
    for name, forward, p in (("flax", forwards["flax"], params), ("jax scan", forwards["jax scan"], scan_params)):
        if case["mode"] == "train":
            step = jax.jit(jax.grad(lambda p, x, forward=forward: forward(p, x).mean()))
        else:
            step = jax.jit(forward)
        fns[name] = _block(lambda step=step, p=p: step(p, x))
        fns[name]()  # compile now: the first call is never timed
    return fns


def _scan_params(key, cell: str, I: int, H: int) -> dict:
    import jax
    gates = {"LSTM": 4, "GRU": 3, "RNN": 1}[cell]
    k1, k2 = jax.random.split(key)
    bound = H ** -0.5  # torch.nn's uniform(-1/sqrt(H), 1/sqrt(H))
    return {
        "w_ih": jax.random.uniform(k1, (I, gates * H), minval=-bound, maxval=bound),
        "w_hh": jax.random.uniform(k2, (H, gates * H), minval=-bound, maxval=bound),
        "b_ih": jax.numpy.zeros((gates * H,)), "b_hh": jax.numpy.zeros((gates * H,)),
    }


def _scan_forward(cell: str, p: dict, x):
    """x (B, T, I) -> outputs (B, T, H): one input product for all steps, then the recurrence in lax.scan."""
    import jax
    import jax.numpy as jnp

    B = x.shape[0]
    H = p["w_hh"].shape[0]
    xw = jnp.swapaxes(x @ p["w_ih"] + p["b_ih"], 0, 1)  # (T, B, G·H)

    def lstm(carry, xw_t):
        h, c = carry
        i, f, g, o = jnp.split(xw_t + h @ p["w_hh"] + p["b_hh"], 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), h

    def gru(h, xw_t):
        xr, xz, xn = jnp.split(xw_t, 3, axis=-1)
        hr, hz, hn = jnp.split(h @ p["w_hh"] + p["b_hh"], 3, axis=-1)
        r, z = jax.nn.sigmoid(xr + hr), jax.nn.sigmoid(xz + hz)
        n = jnp.tanh(xn + r * hn)  # reset gate after the recurrent product, as cuDNN and torch.nn
        h = (1 - z) * n + z * h
        return h, h

    def rnn(h, xw_t):
        h = jnp.tanh(xw_t + h @ p["w_hh"] + p["b_hh"])
        return h, h

    zeros = jnp.zeros((B, H), x.dtype)
    step, init = {"LSTM": (lstm, (zeros, zeros)), "GRU": (gru, zeros), "RNN": (rnn, zeros)}[cell]
    _, ys = jax.lax.scan(step, init, xw)  # (T, B, H)
    return jnp.swapaxes(ys, 0, 1)  # (B, T, H)


def _build_stream(case: dict) -> dict[str, Callable[[], None]]:
    import jax
    import jax.numpy as jnp

    cell, B, I, H, steps = case["cell"], case["B"], case["I"], case["H"], case["steps"]
    key = jax.random.PRNGKey(0)
    x = jax.random.normal(key, (B, I), jnp.float32)
    flax_cell = _cell(cell, H)
    carry = flax_cell.initialize_carry(key, (B, I))
    params = flax_cell.init(key, carry, x)
    step = jax.jit(lambda p, c, x: flax_cell.apply(p, c, x)[0])

    def run():
        c = carry
        for _ in range(steps):
            c = step(params, c, x)
        jax.block_until_ready(c)

    run()  # compile
    return {"jax jit step": run}
