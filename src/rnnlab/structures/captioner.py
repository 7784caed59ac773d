"""Image captioning: a 2-D CNN reads the image, a recurrent decoder writes the caption (one-to-many).

    x = [pixels / 255 - 0.5; X; Y]                          X, Y: each pixel's column and row in [-1, 1]
    a_1 … a_S, v = ConvNet2d.encode(x)                      S = H'·W' feature positions (B, S, C_L), v (B, F)
    caption = OneToMany(v, memory = a  if attention == "soft")

:class:`~rnnlab.nn.conv.ConvNet2d` gives the positions of its last feature map and the pooled summary v;
:class:`~rnnlab.structures.one_to_many.OneToMany` conditions on v at the first step or at every step
(Karpathy & Fei-Fei, 2015; Mao et al., 2015), starts from h_0 = tanh(W_s v) with ``init_state`` (Vinyals et
al., 2015), and with ``attention="soft"`` attends over the positions at every step (Xu et al., 2015, "Show,
Attend and Tell", §4.2; optional gate β_t and doubly stochastic regulariser).

``coords`` appends the two coordinate channels X, Y to the image (CoordConv, Liu et al., 2018): a CNN's
features say what is there but hardly where, and "in the top left" or "left of" need the where. Deviation
from Xu et al.: the CNN is a small one trained with the decoder, not a frozen pre-trained VGG.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Optional

import torch
from torch import Tensor, nn

from rnnlab.nn.conv import ConvNet2d

from .base import Output, check_choice, check_special_tokens, require
from .decoders import DecoderConfig
from .generation import EndToken, Method
from .one_to_many import Condition, OneToMany, OneToManyConfig

CaptionAttention = Literal["none", "soft"]


@dataclass(frozen=True)
class CaptionerConfig:
    """The image encoder (a small CNN) and the caption decoder."""

    vocab_size: int
    """V: output tokens, including the padding, begin and end tokens."""
    in_channels: int = 3
    """C: 3 for RGB images, 1 for grey ones."""
    channels: tuple[int, ...] = (16, 32, 64)
    """The CNN's channels per [conv → ReLU → max-pool 2] block; each block halves the feature map."""
    kernel_size: int = 3
    feature_size: int = 128
    """F: the size of the image vector v."""
    coords: bool = True
    """Append the pixels' x and y coordinates as two input channels (CoordConv)."""
    embedding_size: int = 64
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    condition: Condition = "first"
    """first: v is a decoder input at the first step only; every: at every step."""
    init_state: bool = True
    """Start the decoder from h_0 = tanh(W_s v)."""
    attention: CaptionAttention = "soft"
    """none: v alone | soft: attention over the CNN's feature positions at every step (Show, Attend and Tell)."""
    attention_size: int = 0
    """A: the width inside the additive score; 0 = decoder.hidden_size."""
    attention_gate: bool = False
    """soft: scale the attended context by β_t = σ(w_β h_{t-1})."""
    attention_penalty: float = 0.0
    """soft: λ of the doubly stochastic regulariser λ Σ_s (1 - Σ_t α_ts)² (0 = off; Xu et al. use 1)."""
    dropout: float = 0.0
    bos_token: int = 1
    eos_token: int = 2

    def __post_init__(self) -> None:
        check_choice("attention", self.attention, CaptionAttention)
        check_special_tokens(self, self.vocab_size)
        if self.attention == "none" and (self.attention_gate or self.attention_penalty):
            raise ValueError("attention_gate and attention_penalty need attention='soft'")
        self.decoder_config()  # its own checks

    def decoder_config(self) -> OneToManyConfig:
        """The OneToMany that decodes the caption (memory_size = the CNN's last channels with attention)."""
        return OneToManyConfig(
            feature_size=self.feature_size, vocab_size=self.vocab_size, embedding_size=self.embedding_size,
            decoder=self.decoder, condition=self.condition, init_state=self.init_state, dropout=self.dropout,
            bos_token=self.bos_token, eos_token=self.eos_token,
            memory_size=self.channels[-1] if self.attention == "soft" else 0, attention_size=self.attention_size,
            attention_gate=self.attention_gate, attention_penalty=self.attention_penalty,
        )


class Captioner(nn.Module):
    """images (B, C, H, W) -> caption logits (B, T, V).

    Batch keys: ``images`` (B, C, H, W), uint8 pixels 0..255 or floats in [0, 1]; ``y`` (B, T) caption tokens
    ending in the end token; ``lengths`` (optional). ``forward`` returns :class:`~rnnlab.structures.Output` with
    ``logits`` (B, T, V) and, with attention, ``attention`` (B, T, S) over the S = H'·W' feature positions
    (row-major, see :meth:`feature_grid`).
    """

    def __init__(self, config: CaptionerConfig) -> None:
        super().__init__()
        c = config
        self.config = config
        self.cnn = ConvNet2d(c.in_channels + 2 * c.coords, c.feature_size, channels=c.channels,
                             kernel_size=c.kernel_size, dropout=c.dropout)
        self.decoder = OneToMany(c.decoder_config())

    def feature_grid(self, height: int, width: int) -> tuple[int, int]:
        """(H', W'): the feature map of an H × W image (each block halves it, rounding up)."""
        for _ in self.config.channels:
            height, width = math.ceil(height / 2), math.ceil(width / 2)
        return height, width

    def _pixels(self, images: Tensor) -> Tensor:
        """images (B, C, H, W) uint8 or float -> the CNN's input (B, C [+2], H, W), centred on 0."""
        c = self.config
        if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[1] != c.in_channels:
            given = tuple(getattr(images, "shape", ()))
            raise ValueError(f"images must have shape (B, {c.in_channels}, H, W), got {given}")
        dtype = self.cnn.head.weight.dtype
        x = images.to(dtype) / 255.0 if images.dtype == torch.uint8 else images.to(dtype)
        x = x - 0.5
        if c.coords:
            B, _, H, W = x.shape
            ys = torch.linspace(-1.0, 1.0, H, device=x.device, dtype=dtype).view(1, 1, H, 1).expand(B, 1, H, W)
            xs = torch.linspace(-1.0, 1.0, W, device=x.device, dtype=dtype).view(1, 1, 1, W).expand(B, 1, H, W)
            x = torch.cat([x, xs, ys], dim=1)  # (B, C + 2, H, W)
        return x

    def encode(self, images: Tensor) -> tuple[Optional[Tensor], Tensor]:
        """images -> (positions (B, S, C_L) with attention else None, v (B, F))."""
        positions, v = self.cnn.encode(self._pixels(images))
        return (positions if self.config.attention == "soft" else None), v

    def _inner(self, batch: dict) -> dict:
        images = require(batch, "images", "the images (B, C, H, W)", "Captioner")
        memory, v = self.encode(images)
        return {"features": v, "memory": memory, "y": batch.get("y"), "lengths": batch.get("lengths")}

    def forward(self, batch: dict) -> Output:
        return self.decoder(self._inner(batch))

    def loss(self, batch: dict) -> Tensor:
        return self.decoder.loss(self._inner(batch))

    @torch.no_grad()
    def generate(
        self,
        images: Tensor,
        *,
        max_new_tokens: int = 30,
        method: Method = "greedy",
        beam_width: int = 4,
        length_penalty: float = 0.0,
        temperature: float = 1.0,
        top_k: Optional[int] = None,
        top_p: Optional[float] = None,
        end_token: EndToken = "eos",
        generator: Optional[torch.Generator] = None,
    ) -> Tensor:
        """images (B, C, H, W) -> caption tokens (B, ≤ max_new_tokens), ending at the end token, 0 after it.
        The options are those of :meth:`OneToMany.generate`."""
        was_training = self.training
        self.eval()
        try:
            memory, v = self.encode(images)
        finally:
            self.train(was_training)
        return self.decoder.generate(
            v, memory=memory, max_new_tokens=max_new_tokens, method=method, beam_width=beam_width,
            length_penalty=length_penalty, temperature=temperature, top_k=top_k, top_p=top_p, end_token=end_token,
            generator=generator,
        )
