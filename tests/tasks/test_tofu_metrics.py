"""TOFU's metrics on hand-made losses and texts, values worked out by hand."""
import math

import numpy as np
import pytest

from mcu_ray.tasks import tofu_metrics as tm


def test_truth_ratio_and_its_two_aggregations():
    # paraphrased losses 1 and 2; perturbed means 2 and 2 -> r = e^-1 and e^0
    r = tm.truth_ratios([1.0, 2.0], [[1.0, 3.0], [2.0, 2.0]])
    assert r == pytest.approx([math.exp(-1), 1.0])
    assert tm.truth_ratio_stat(r, forget=True) == pytest.approx((math.exp(-1) + 1) / 2)  # mean min(r, 1/r)
    assert tm.truth_ratio_stat(r, forget=False) == pytest.approx((1 - math.exp(-1)) / 2)  # mean max(0, 1 - r)
    # r > 1 (prefers perturbed): clipped to 0 off the forget set, 1/r on it
    assert tm.truth_ratio_stat([math.e], forget=False) == 0.0
    assert tm.truth_ratio_stat([math.e], forget=True) == pytest.approx(math.exp(-1))


def test_probabilities():
    assert tm.probability([0.0, math.log(2)]) == pytest.approx((1 + 0.5) / 2)
    # true answer p=1, two perturbed answers p=0.5 each -> 1 / (1 + 1)
    assert tm.normalised_probability([0.0], [[math.log(2), math.log(2)]]) == pytest.approx(0.5)


def test_forget_quality_is_a_ks_p_value():
    assert tm.forget_quality([0.2, 0.5, 0.9], [0.2, 0.5, 0.9]) == pytest.approx(1.0)
    # fully separated samples of 3 and 3: exact two-sided p = 2 / C(6, 3) = 0.1
    assert tm.forget_quality([1, 2, 3], [4, 5, 6]) == pytest.approx(0.1)
    # testing r or 1/r (TOFU's code) gives the same p-value
    a, b = np.array([0.3, 0.8, 1.2, 2.0]), np.array([0.5, 0.6, 0.9, 3.0, 4.0])
    assert tm.forget_quality(a, b) == pytest.approx(tm.forget_quality(1 / a, 1 / b))


def test_model_utility_harmonic_mean_of_nine():
    assert tm.model_utility([1] * 8 + [0.5]) == pytest.approx(9 / (8 + 2))
    assert tm.model_utility([0.5] * 9) == pytest.approx(0.5)
    assert tm.model_utility([1] * 8 + [0.0]) == 0.0
    with pytest.raises(ValueError, match="9 values"):
        tm.model_utility([1, 1])


def test_rouge_l_recall():
    # LCS "the cat sat" = 3 of the reference's 6 tokens
    assert tm.rouge_l_recall(["the cat sat"], ["the cat sat on the mat"]) == pytest.approx([0.5])
    assert tm.rouge_l_recall(["cats running fast"], ["cat run"]) == pytest.approx([1.0])  # stemmer on
    assert tm.rouge_l_recall(["nothing here"], ["the cat"]) == pytest.approx([0.0])
