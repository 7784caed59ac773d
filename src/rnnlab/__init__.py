"""rnnlab: recurrent neural networks on PyTorch.

``rnnlab.nn`` holds the cells and layers, ``rnnlab.structures`` the models, ``rnnlab.training`` the trainer.
``rnnlab.load(path)`` rebuilds a model from a bundle directory without unpickling anything.
"""
__version__ = "0.1.0"


def load(path):
    """Rebuild the model saved in the bundle directory ``path`` (see :func:`rnnlab.training.load`)."""
    from rnnlab.training.checkpoint import load as _load

    return _load(path)
