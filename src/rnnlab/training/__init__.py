"""rnnlab.training: the trainer, truncated BPTT streams, model bundles and resumable checkpoints."""
from .checkpoint import Bundle, load, load_bundle, save_bundle
from .config import TrainerConfig
from .progress import ValidMetric
from .tbptt import TokenStream
from .trainer import Trainer, TrainingDiverged, count_tokens, lr_at

__all__ = [
    "TrainerConfig", "Trainer", "TrainingDiverged", "TokenStream", "Bundle", "save_bundle", "load", "load_bundle",
    "count_tokens", "lr_at", "ValidMetric",
]
