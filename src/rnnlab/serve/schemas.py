"""The request bodies: strict pydantic models (wrong types and unknown fields are 422 with a JSON body)."""
from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class GenerateRequest(_Strict):
    prompt: str = Field(min_length=1, description="the text to continue")
    max_new_tokens: Optional[int] = Field(None, ge=0, description="tokens to generate (None: the bundle's setting)")
    temperature: Optional[float] = Field(None, ge=0, description="0 = greedy")
    top_k: Optional[int] = Field(None, ge=1)
    top_p: Optional[float] = Field(None, gt=0, le=1)
    method: Optional[Literal["sample", "greedy"]] = None
    seed: Optional[int] = Field(None, ge=0, le=2**63 - 1)
    probe: bool = Field(False, description="stream: add the hidden units and gate values of each step")


class TextsRequest(_Strict):
    text: Optional[str] = Field(None, description="one input")
    texts: Optional[list[str]] = Field(None, description="several inputs")

    def inputs(self) -> list[str]:
        if (self.text is None) == (self.texts is None):
            raise ValueError("give exactly one of 'text' (a string) and 'texts' (a list of strings)")
        return [self.text] if self.text is not None else list(self.texts)


class TranslateRequest(TextsRequest):
    beam_size: Optional[int] = Field(None, ge=1, le=16)
    max_new_tokens: Optional[int] = Field(None, ge=1)


class PredictRequest(_Strict):
    inputs: list[str] = Field(description="the task's inputs, one string each (as lines of 'rnnlab predict')")
    options: dict[str, Any] = Field(default_factory=dict, description="the task's PredictOptions fields")


class StepRequest(_Strict):
    text: Optional[str] = Field(None, description="language models: characters/words to feed, tokenized")
    tokens: Optional[list[int]] = Field(None, description="language models: token ids to feed")
    features: Optional[list[list[float]]] = Field(None, description="feature models: vectors to feed, one per step")
    top_k: int = Field(5, ge=1, le=100, description="language models: the most likely next tokens to return")
    all_steps: bool = Field(False, description="return the outputs of every fed step, not only the last")
    probe: bool = Field(False, description="add the gate activations of the last layer (LSTM input/forget/output, "
                                           "GRU reset/update): a second product of its weights, so off unless asked")
    units: Optional[int] = Field(None, ge=0, description="hidden (and gate) units to return, the first ones of the "
                                                          "last layer; None: --limits.probe_units, 0: none")
