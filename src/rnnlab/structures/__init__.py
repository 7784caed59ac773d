"""rnnlab.structures: the five RNN structures and the baselines on the same interface.

Each structure is built from a frozen config dataclass and speaks one small interface:

- ``forward(batch) -> Output``: every structure returns the same named tuple :class:`Output`
  ``(logits, state, attention)``. ``logits`` holds the head's scores (class or token logits, or the values
  for regression): (B, O) for OneToOne and ManyToOne, (B, T, O) for ManyToMany, (B, T, V) for LanguageModel,
  OneToMany, Seq2Seq and TransformerSeq2Seq. ``state`` is what to carry into the next call (LanguageModel with
  a recurrent encoder), else None. ``attention`` holds weights to look at (Seq2Seq (B, T, S), ManyToOne with
  attention pooling (B, T)), else None.
- ``loss(batch) -> scalar``.
- ``predict(x, ...)`` (OneToOne, ManyToOne, ManyToMany) or ``generate(..., *, max_new_tokens, method, ...)``
  (LanguageModel, OneToMany, Seq2Seq, TransformerSeq2Seq) with the same explicit decoding keywords
  (see :mod:`rnnlab.structures.generation`).

The decoders of OneToMany and Seq2Seq are configured by one nested :class:`DecoderConfig` (``config.decoder``),
as every encoder is by :class:`EncoderConfig` (``config.encoder``). Fields with a fixed set of values are
``Literal`` types, checked when the config is built.
"""
from .base import Output
from .captioner import Captioner, CaptionerConfig
from .decoders import DecoderConfig
from .encoders import EncoderConfig, build_encoder
from .language_model import LanguageModel, LanguageModelConfig
from .many_to_many import ManyToMany, ManyToManyConfig
from .many_to_one import ManyToOne, ManyToOneConfig
from .one_to_many import OneToMany, OneToManyConfig
from .one_to_one import OneToOne, OneToOneConfig
from .seq2seq import Seq2Seq, Seq2SeqConfig
from .sequence_classifier import (
    FrameClassifier,
    FrameClassifierConfig,
    SequenceClassifier,
    SequenceClassifierConfig,
)
from .transformer_seq2seq import TransformerSeq2Seq, TransformerSeq2SeqConfig

__all__ = [
    "Output", "EncoderConfig", "build_encoder", "DecoderConfig",
    "OneToOne", "OneToOneConfig", "OneToMany", "OneToManyConfig", "ManyToOne", "ManyToOneConfig",
    "ManyToMany", "ManyToManyConfig", "LanguageModel", "LanguageModelConfig", "Seq2Seq", "Seq2SeqConfig",
    "TransformerSeq2Seq", "TransformerSeq2SeqConfig", "Captioner", "CaptionerConfig",
    "SequenceClassifier", "SequenceClassifierConfig", "FrameClassifier", "FrameClassifierConfig",
]
