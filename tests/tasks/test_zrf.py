"""ZRF is Chundawat et al.'s number: ``metrics.py`` of github.com/vikram2000b/bad-teaching-unlearning,

    def JSDiv(p, q):
        m = (p+q)/2
        return 0.5*F.kl_div(torch.log(p), m) + 0.5*F.kl_div(torch.log(q), m)

    UnLearningScore = 1 - JSDiv(softmax(model), softmax(random net)) over the whole forget loader,

with F.kl_div(input, target) = target * (log target - input) elementwise, averaged over all N*C elements.
"""
import numpy as np
import pytest
import torch

from mcu_ray.tasks.classification import js_divergence, zrf_score

# three examples, four classes: rows of the model's and the random network's softmax
P = np.array([[0.70, 0.10, 0.10, 0.10],
              [0.25, 0.25, 0.25, 0.25],
              [0.05, 0.05, 0.05, 0.85]])
Q = np.array([[0.40, 0.30, 0.20, 0.10],
              [0.10, 0.20, 0.30, 0.40],
              [0.25, 0.25, 0.25, 0.25]])


def reference_zrf(p: np.ndarray, q: np.ndarray) -> float:
    """Their formula written out: 1 - ½[mean(m (log m - log p)) + mean(m (log m - log q))] over N*C."""
    m = (p + q) / 2
    return 1 - (0.5 * np.mean(m * (np.log(m) - np.log(p))) + 0.5 * np.mean(m * (np.log(m) - np.log(q))))


def test_zrf_is_the_reference_formula():
    expected = reference_zrf(P, Q)
    assert expected == pytest.approx(0.97355, abs=1e-5)  # the number itself, so a slip in both is caught
    p, q = torch.tensor(P, dtype=torch.float32), torch.tensor(Q, dtype=torch.float32)
    assert zrf_score(p, q) == pytest.approx(expected, rel=1e-6)
    assert float(js_divergence(p, q)) == pytest.approx(1 - expected, rel=1e-5)


def test_zrf_is_not_the_row_wise_textbook_js():
    """The former number (row-wise ½[KL(p‖m) + KL(q‖m)] summed over classes) is not what they publish."""
    m = (P + Q) / 2
    textbook = 1 - np.mean(0.5 * (P * np.log(P / m)).sum(1) + 0.5 * (Q * np.log(Q / m)).sum(1))
    assert abs(zrf_score(torch.tensor(P), torch.tensor(Q)) - textbook) > 0.05


def test_identical_predictions_give_zrf_one():
    p = torch.tensor(P, dtype=torch.float32)
    assert zrf_score(p, p.clone()) == 1.0
    one_hot = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # exact zeros too
    assert zrf_score(one_hot, one_hot.clone()) == 1.0
