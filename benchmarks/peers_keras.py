"""The Keras 3 contenders of benchmarks/peers.py: ``keras.layers.LSTM/GRU/SimpleRNN(return_sequences=True)``
on the backend that KERAS_BACKEND names (peers_worker.py sets it before the import: jax or torch).

- JAX backend: ``layer.stateless_call`` under jax.jit, the training step's gradient by jax.grad (compiled in
  setup, never timed);
- torch backend: the layer called eagerly on a torch tensor, ``outputs.mean().backward()``, as a Keras user on
  torch runs it.

A training step is the gradient of outputs.mean() with respect to every trainable weight; inference the forward.
Keras has no streaming contender here (its layers step through whole sequences).
"""
from __future__ import annotations

from collections.abc import Callable

LAYERS = {"LSTM": "LSTM", "GRU": "GRU", "RNN": "SimpleRNN"}


def missing() -> str:
    try:
        import keras  # noqa: F401
    except ImportError as e:
        return f"not installed ({e.name})"
    return ""


def versions() -> dict:
    import keras
    return {"keras": keras.__version__, "keras backend": keras.backend.backend()}


def setup_threads(n: int) -> None:
    import keras
    if keras.backend.backend() == "torch":
        import torch
        torch.set_num_threads(n)


def build(case: dict) -> dict[str, Callable[[], None]]:
    import keras
    import numpy as np

    if case["kind"] == "stream":
        return {}
    cell, B, T, I, H = case["cell"], case["B"], case["T"], case["I"], case["H"]
    keras.utils.set_random_seed(0)
    layer = getattr(keras.layers, LAYERS[cell])(H, return_sequences=True)
    layer.build((B, T, I))
    x = np.random.default_rng(0).standard_normal((B, T, I), dtype=np.float32)
    backend = keras.backend.backend()
    name = f"keras ({backend})"
    make = {"jax": _jax, "torch": _torch}[backend]
    fn = make(layer, x, case["mode"] == "train")
    fn()  # compile / first call: never timed
    return {name: fn}


def _jax(layer, x, train: bool) -> Callable[[], None]:
    import jax
    import jax.numpy as jnp

    x = jnp.asarray(x)
    trainable = [v.value for v in layer.trainable_variables]
    frozen = [v.value for v in layer.non_trainable_variables]

    def forward(weights, x):
        return layer.stateless_call(weights, frozen, x, training=train)[0]  # (B, T, H)

    step = jax.jit(jax.grad(lambda w, x: forward(w, x).mean()) if train else forward)
    return lambda: jax.block_until_ready(step(trainable, x))


def _torch(layer, x, train: bool) -> Callable[[], None]:
    import torch

    x = torch.from_numpy(x)
    weights = [v.value for v in layer.trainable_variables]

    def run_train():
        for w in weights:
            w.grad = None
        layer(x, training=True).mean().backward()

    def run_infer():
        with torch.no_grad():
            layer(x, training=False)

    return run_train if train else run_infer
