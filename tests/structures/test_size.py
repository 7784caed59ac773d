"""Model sizes from the config alone agree with the models built from it."""
import pytest

from rnnlab.structures import EncoderConfig, LanguageModel, LanguageModelConfig
from rnnlab.structures.size import estimate_size
from rnnlab.tasks._common import check_model_size
from rnnlab.tasks.textgen import TextgenConfig, TextModelConfig
from rnnlab.training import TrainerConfig


@pytest.mark.parametrize("encoder", [
    EncoderConfig(kind="lstm", hidden_size=32, num_layers=2),
    EncoderConfig(kind="gru", hidden_size=24),
    EncoderConfig(kind="rnn", hidden_size=16, num_layers=3),
    EncoderConfig(kind="mingru", hidden_size=32, num_layers=2),
    EncoderConfig(kind="window", hidden_size=32, window=7, num_layers=2),
    EncoderConfig(kind="cnn", hidden_size=32, num_layers=2, causal=True),
    EncoderConfig(kind="transformer", hidden_size=32, num_layers=2, causal=True),
])
def test_the_parameter_estimate_is_within_ten_percent_of_the_built_model(encoder):
    V, E = 50, 16
    model = LanguageModel(LanguageModelConfig(vocab_size=V, embedding_size=E, encoder=encoder))
    actual = sum(p.numel() for p in model.parameters())
    estimated = estimate_size(TextModelConfig(embedding_size=E, encoder=encoder), vocab_size=V, batch_size=1,
                              time_steps=8).parameters
    assert abs(estimated - actual) <= 0.1 * actual, (estimated, actual)


def _config(**encoder) -> TextgenConfig:
    return TextgenConfig(model=TextModelConfig(encoder=EncoderConfig(**encoder)), trainer=TrainerConfig(run_dir="r"))


def test_oversize_models_are_refused_before_allocation_and_the_check_can_be_turned_off():
    check_model_size(_config())  # the default fits
    with pytest.raises(ValueError, match="too big.*max_memory_fraction"):
        check_model_size(_config(num_layers=1_000_000))
    huge = _config(hidden_size=10_000_000)
    check_model_size(TextgenConfig(model=huge.model, trainer=TrainerConfig(run_dir="r", max_memory_fraction=0)))
