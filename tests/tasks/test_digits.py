"""scikit-learn's digits as the task reads them: 1,797 images scaled to [0, 1], a stratified 80/20 split,
the small conv net's shape and size, and the options' bounds."""
import re

import pytest
import torch

from mcu_ray.errors import SpecError
from mcu_ray.tasks.digits import TASK, Options, build_model, load_arrays


def test_arrays_are_scaled_and_split_by_class():
    train, test, classes = load_arrays(Options())
    assert classes == 10
    assert train["x"].shape == (1437, 1, 8, 8) and test["x"].shape == (360, 1, 8, 8)  # test: ceil(0.2 * 1797)
    assert train["x"].min() == 0.0 and train["x"].max() == 1.0  # pixel values 0..16, divided by 16
    counts = torch.bincount(test["y"], minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # ~178 images per class, a fifth of each in test


def test_the_conv_net_has_the_parameters_its_layers_add_up_to():
    """width 4: conv 1->4 (36 + 4), BatchNorm (8), conv 4->8 (288 + 8), BatchNorm (16),
    linear 128->64 (8192 + 64), linear 64->10 (640 + 10)."""
    model = build_model(Options(width=4))
    assert sum(p.numel() for p in model.parameters()) == 40 + 8 + 296 + 16 + 8256 + 650
    assert model(torch.zeros(3, 1, 8, 8)).shape == (3, 10)


@pytest.mark.parametrize("field,value,words", [
    ("test_fraction", 0.6, "between 0.05 and 0.5"), ("val_fraction", 0.7, "[0, 0.5]"), ("width", 0, ">= 1"),
    ("lr", 0.0, "positive learning rate"),
])
def test_options_out_of_bounds_are_refused(field, value, words):
    with pytest.raises(SpecError, match=re.escape(words)) as err:
        TASK.check_options(Options(**{field: value}), "tasks[0].options", None)
    assert err.value.path == f"tasks[0].options.{field}"


def test_the_same_options_give_the_same_model_and_split():
    options = Options(width=4)
    a, b = TASK.new_model(options, seed=2), TASK.new_model(options, seed=2)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert torch.equal(TASK.load(options, 5).forget_idx, TASK.load(options, 5).forget_idx)
