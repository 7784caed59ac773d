"""TrainerConfig: every bad value names its field; choices are Literal types; cross-field checks say what to set."""
import typing

import pytest

from rnnlab.training import TrainerConfig


@pytest.mark.parametrize("field, value", [
    ("optimizer", "lion"), ("lr", 0.0), ("schedule", "step"), ("precision", "fp16"), ("clip_norm", -1.0),
    ("device", "tpu"), ("strategy", "fsdp"), ("devices", 0), ("warmup_steps", -1), ("eval_every", 1.5),
])
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        TrainerConfig(**{field: value})


def test_config_cross_checks():
    with pytest.raises(ValueError, match="max_steps"):
        TrainerConfig(schedule="cosine")
    with pytest.raises(ValueError, match="run_dir"):
        TrainerConfig(checkpoint_every=5)
    with pytest.raises(ValueError, match="momentum"):
        TrainerConfig(momentum=0.9)


@pytest.mark.parametrize("field, choices", [
    ("optimizer", ("adam", "adamw", "sgd")), ("schedule", ("constant", "cosine", "plateau")),
    ("precision", ("float32", "bf16", "auto")), ("device", ("auto", "cpu", "cuda")), ("strategy", ("auto", "ddp")),
])
def test_choices_are_literal_types_and_the_error_lists_them(field, choices):
    assert typing.get_args(typing.get_type_hints(TrainerConfig)[field]) == choices
    with pytest.raises(ValueError, match=rf"{field} must be one of .*got 'nope': set {field} to one of them"):
        TrainerConfig(**{field: "nope"})
