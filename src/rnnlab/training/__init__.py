"""rnnlab.training: the trainer, truncated BPTT streams, model bundles and resumable checkpoints."""
from .checkpoint import load, load_bundle, save_bundle
from .config import TrainerConfig
from .tbptt import TokenStream
from .trainer import Trainer, count_tokens, lr_at

__all__ = ["TrainerConfig", "Trainer", "TokenStream", "save_bundle", "load", "load_bundle", "count_tokens", "lr_at"]
