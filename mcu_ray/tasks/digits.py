"""scikit-learn's bundled 8x8 digits: the offline stand-in for MU-Bench's CIFAR-10.

1,797 greyscale images, 10 classes, shipped inside scikit-learn, so a grid runs with
no network and in minutes on a laptop CPU. The model is a small conv net with
BatchNorm, so the curve code meets the same BatchNorm issue as a ResNet does.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn

from mcu_ray.errors import SpecError
from mcu_ray.tasks.classification import ClassificationTask, check_val_fraction


@dataclass(frozen=True)
class Options:
    split_seed: int = 0  # fixes the train/test split and the forget-set permutation
    test_fraction: float = 0.2
    # training rows held out of D as the validation split (ClassificationData; pathway's forget target)
    val_fraction: float = 0.1
    model_seed: int = 0  # initialisation of the original model
    width: int = 16  # channels of the first conv layer (second has 2x)
    epochs: int = 30  # training of the original model (and of the retrained model)
    lr: float = 3e-3
    batch_size: int = 64
    weight_decay: float = 1e-4

    def check(self, path: str) -> None:
        if not 0.05 <= self.test_fraction <= 0.5:
            raise SpecError(f"{path}.test_fraction", self.test_fraction, "expected a fraction between 0.05 and 0.5")
        check_val_fraction(self.val_fraction, path)
        for key in ("width", "epochs", "batch_size"):
            if getattr(self, key) < 1:
                raise SpecError(f"{path}.{key}", getattr(self, key), "expected an integer >= 1")
        if self.lr <= 0:
            raise SpecError(f"{path}.lr", self.lr, "expected a positive learning rate")


@lru_cache(maxsize=4)
def load_arrays(opts: Options):
    """Images scaled to [0, 1] as (n, 1, 8, 8) float tensors; a seeded stratified split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = torch.tensor(digits.images / 16.0, dtype=torch.float32)[:, None]  # (n, 1, 8, 8)
    y = torch.tensor(digits.target, dtype=torch.long)
    idx_train, idx_test = train_test_split(
        range(len(y)), test_size=opts.test_fraction, random_state=opts.split_seed, stratify=digits.target)
    return {"x": x[idx_train], "y": y[idx_train]}, {"x": x[idx_test], "y": y[idx_test]}, 10


def build_model(opts: Options) -> nn.Module:
    w = opts.width
    return nn.Sequential(
        nn.Conv2d(1, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(),  # (b, w, 8, 8)
        nn.Conv2d(w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(),
        nn.MaxPool2d(2),  # (b, 2w, 4, 4)
        nn.Flatten(),
        nn.Linear(2 * w * 16, 64), nn.ReLU(),
        nn.Linear(64, 10),
    )


TASK = ClassificationTask(
    name="digits",
    Options=Options,
    load_arrays=load_arrays,
    build_model=build_model,
    default_ratios=(2, 4, 6, 8, 10),  # MU-Bench's ratios
    # Tuned on this task so that the forget accuracy of each method falls well below
    # the original's while retain accuracy stays high (see README, "defaults").
    default_hparams={
        "ga": {"steps": 30, "lr": 1e-4, "batch_size": 16},
        "rl": {"epochs": 10, "lr": 2e-3, "batch_size": 8, "retain_batch_size": 32, "so": {"lr": 1e-2}},
        "gd": {"steps": 30, "lr": 2e-4, "batch_size": 16, "retain_batch_size": 32},
        "npo": {"steps": 30, "lr": 1e-4, "batch_size": 16},  # the paper's NPO: no retain term, so GA's rate
        "bt": {"epochs": 10, "lr": 2e-3, "batch_size": 8, "retain_batch_size": 32, "so": {"lr": 1e-2}},
        "su": {"epochs": 10, "lr": 2e-3, "batch_size": 8, "retain_batch_size": 32, "so": {"lr": 1e-2}},
    },
)
