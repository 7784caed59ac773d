"""rnnlab.structures: the five RNN structures and the baselines on the same interface.

Each is built from a frozen config dataclass and speaks ``forward(batch)``, ``loss(batch) -> scalar``
and ``predict``/``generate``.
"""
from .encoders import EncoderConfig, build_encoder
from .language_model import LanguageModel, LanguageModelConfig
from .many_to_many import ManyToMany, ManyToManyConfig
from .many_to_one import ManyToOne, ManyToOneConfig
from .one_to_many import OneToMany, OneToManyConfig
from .one_to_one import OneToOne, OneToOneConfig
from .seq2seq import Seq2Seq, Seq2SeqConfig
from .transformer_seq2seq import TransformerSeq2Seq, TransformerSeq2SeqConfig

__all__ = [
    "EncoderConfig", "build_encoder",
    "OneToOne", "OneToOneConfig", "OneToMany", "OneToManyConfig", "ManyToOne", "ManyToOneConfig",
    "ManyToMany", "ManyToManyConfig", "LanguageModel", "LanguageModelConfig", "Seq2Seq", "Seq2SeqConfig",
    "TransformerSeq2Seq", "TransformerSeq2SeqConfig",
]
