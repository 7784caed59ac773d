"""A fast trainer configuration and a tiny language model with random batches, for the trainer's tests."""
import torch

from rnnlab.structures import EncoderConfig, LanguageModel, LanguageModelConfig
from rnnlab.training import TrainerConfig


def fast_config(**kw):
    return TrainerConfig(**{"progress": False, "max_epochs": 1, **kw})


def tiny_lm():
    return LanguageModel(LanguageModelConfig(12, embedding_size=8, encoder=EncoderConfig(hidden_size=8)))


def lm_batches(n=8, B=4, T=6):
    out = []
    for _ in range(n):
        t = torch.randint(0, 12, (B, T + 1))
        out.append({"x": t[:, :-1], "y": t[:, 1:]})
    return out
