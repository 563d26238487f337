import torch
from torch import nn

from mcu_ray.placement import Placement

from mcu_ray.methods import su
from mcu_ray.methods.bt import kl_to_teacher


def test_bad_teaching_kl_is_on_probabilities():
    logits = torch.tensor([[1.0, 2.0, 3.0]])
    assert abs(kl_to_teacher(logits, logits, 1.0).item()) < 1e-6
    # a constant shift of the logits is the same distribution: KL 0 (KL on raw logits would not be)
    assert abs(kl_to_teacher(logits, logits + 5.0, 1.0).item()) < 1e-6
    p, q = torch.softmax(torch.tensor([0.0, 0.0, 3.0]), -1), torch.softmax(logits[0], -1)
    by_hand = (p * (p.log() - q.log())).sum()
    assert by_hand > 0.01
    assert torch.isclose(kl_to_teacher(logits, torch.tensor([[0.0, 0.0, 3.0]]), 1.0)[0], by_hand)
    # a higher temperature flattens both: smaller divergence
    assert kl_to_teacher(logits, -logits, 4.0) < kl_to_teacher(logits, -logits, 1.0)


class Data:
    """One forget example x = (1, 2), class 0; the model is a 2x2 linear layer without bias."""

    def split(self, name):
        return {"x": torch.tensor([[1.0, 2.0]]), "y": torch.tensor([0])}


class Task:
    @staticmethod
    def example_losses(model, batch, reduction="mean"):
        return nn.functional.cross_entropy(model(batch["x"]), batch["y"], reduction="none")


def test_saliency_mask_keeps_the_largest_gradients():
    model = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.zero_()  # softmax (1/2, 1/2): dL/dW = (p - onehot) x^T = [[-.5, -1], [.5, 1]]
    mask = su.saliency_mask(model, Task(), Data(), su.Params(mask_ratio=0.5), Placement("cpu"))
    assert mask["weight"].tolist() == [[0.0, 1.0], [0.0, 1.0]]  # the |1| entries, not the |.5| ones
    assert model.weight.grad is None  # the model itself is untouched
    full = su.saliency_mask(model, Task(), Data(), su.Params(mask_ratio=1.0), Placement("cpu"))
    assert full["weight"].sum() == 4
