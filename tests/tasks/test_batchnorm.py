"""BatchNorm statistics re-estimated on data: the running mean becomes the data's mean exactly, the
running variance the mean of the batches' unbiased variances; momentum and mode come back as they were."""
import torch
from torch import nn

from mcu_ray.placement import Placement
from mcu_ray.tasks.batchnorm import recompute_batchnorm


def test_statistics_are_the_cumulative_average_over_the_batches():
    torch.manual_seed(0)
    model = nn.Sequential(nn.BatchNorm1d(2, momentum=0.3))
    model[0].running_mean.fill_(5.0)  # stale statistics of another point
    model.eval()
    x = torch.randn(8, 2) * torch.tensor([1.0, 3.0]) + torch.tensor([2.0, -1.0])
    recompute_batchnorm(model, {"x": x}, Placement("cpu"), lambda m, b: m(b["x"]), batch_size=4)
    torch.testing.assert_close(model[0].running_mean, x.mean(0))  # two equal batches: their means' mean
    torch.testing.assert_close(model[0].running_var, (x[:4].var(0) + x[4:].var(0)) / 2)
    assert model[0].momentum == 0.3 and not model.training


def test_a_model_without_batchnorm_is_left_alone():
    model = nn.Linear(2, 2)
    calls = []
    recompute_batchnorm(model, {"x": torch.ones(3, 2)}, Placement("cpu"), lambda m, b: calls.append(1))
    assert calls == []  # no forward pass at all
