"""SalUn (SU)'s saliency mask against gradients computed by hand."""
import torch
from torch import nn

from mcu_ray.methods import su
from mcu_ray.placement import Placement


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
