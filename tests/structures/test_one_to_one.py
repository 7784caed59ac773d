"""OneToOne: the feed-forward baseline learns and predicts, for classification and regression."""
import pytest
import torch
from _structure_helpers import overfit

from rnnlab.structures.one_to_one import OneToOne, OneToOneConfig


def test_one_to_one_learns_and_predicts():
    model = OneToOne(OneToOneConfig(input_size=4, output_size=3, hidden_sizes=(32,)))
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    assert overfit(model, {"x": x, "y": y}, steps=300) < 0.05
    assert torch.equal(model.predict(x), y)
    reg = OneToOne(OneToOneConfig(input_size=4, output_size=2, task="regression"))
    assert overfit(reg, {"x": x, "y": torch.randn(16, 2)}, steps=300) < 0.01


@pytest.mark.parametrize(
    "make,pattern",
    [
        (lambda: OneToOneConfig(input_size=4, output_size=2, task="ranking"), r"task must be one of .*got 'ranking'"),
        (lambda: OneToOneConfig(input_size=0, output_size=2), r"input_size and output_size must be positive"),
    ],
)
def test_bad_configurations_fail_at_construction(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()
