"""Pathway unlearning (Shi & Wang 2025, "MCU", arXiv 2505.10859): a method that starts
where another one ends.

``pathway_<m>`` trains a quadratic Bezier curve from the original model (t=0) to the
endpoint of method ``m`` (t=1), only its midpoint and only a masked subset of its
tensors, and exports the point t* whose forget and retain accuracy are closest to the
original's accuracy on data it never saw and on Dr (the reference's alignment principle;
the retrained model only scores the result). The loop and its decisions live in
``mcu_ray.pathway_curve``; this file holds the knobs and the registration.
"""
from __future__ import annotations

from dataclasses import dataclass

from mcu_ray.errors import SpecError
from mcu_ray.methods.common import Method, UnlearnParams

OPTIMIZERS = ("sgd", "adamw")


@dataclass(frozen=True)
class Params(UnlearnParams):
    """``epochs`` / ``lr`` / ``batch_size`` train the curve's midpoint; a batch mixes forget and
    retain examples in proportion to Df and the retain subset (``retain_batch_size`` is unused).

    Defaults are the reference's README command for CIFAR-10 (github.com/TIML-Group/
    Mode-Connectivity-Unlearning, ff1f215) unless said otherwise. ``k_r`` is not set there: its
    mask script writes one mask per k_r in {0, 0.1, 0.2, 0.3, 0.4} and the user picks one; 0.1 is
    the smallest that keeps the retain-critical tensors out (k_r = 0 skips that half of the mask).
    TOFU's language models override optimiser and lr in the task's ``default_hparams``.
    ``optimizer`` trains the bend; the grid's FO/SO axis picks the source endpoint's optimiser.
    """

    epochs: int = 10  # passes over Df (README: --epochs=10)
    lr: float = 0.01  # constant (README: --lr=0.01, --milestones=11 after 10 epochs)
    batch_size: int = 128  # forget + retain examples per step (README: --batch_size=128)
    weight_decay: float = 0.0  # the reference forces 0 for curves (train.py:166)
    optimizer: str = "sgd"  # "sgd" (the reference, train.py:163) or "adamw"
    momentum: float = 0.9  # SGD only (arg_parser default)
    k: float = 0.5  # fraction of all parameters the midpoint may move (generate_weight_mask.py: 0.5)
    k_r: float = 0.1  # fraction of all parameters kept out first: the tensors Dr depends on most
    retain_ratio: float = 0.5  # fraction of Dr mixed into the curve's training data (README: 0.5)
    beta_low: float = 0.01  # forget weight when the forget excess is below the retain surplus (unlearn.py:105)
    beta_high: float = 0.5  # forget weight otherwise (unlearn.py:107)
    select_points: int = 20  # t values evaluated, equally spaced in [0, 1] (eval_curve.py: --num_points=20)
    search_from: float = 0.75  # t* is searched in [search_from, 1] (utils.py:186)

    def check(self, path: str) -> None:
        super().check(path)
        for key in ("k", "k_r", "retain_ratio"):
            if not 0 <= getattr(self, key) <= 1:
                raise SpecError(f"{path}.{key}", getattr(self, key), "expected a fraction in [0, 1]")
        if self.k == 0:
            raise SpecError(f"{path}.k", self.k, "expected a fraction in (0, 1]: with k = 0 nothing trains")
        if self.steps:
            raise SpecError(f"{path}.steps", self.steps, "not used by pathway methods: set epochs (passes over Df)")
        if self.k + self.k_r > 1:
            raise SpecError(f"{path}.k", self.k,
                            f"k + k_r must be at most 1 (k_r = {self.k_r} of the parameters are kept out first)")
        if self.retain_ratio == 0:
            raise SpecError(f"{path}.retain_ratio", self.retain_ratio, "expected a fraction in (0, 1]")
        for key in ("beta_low", "beta_high"):
            if getattr(self, key) < 0:
                raise SpecError(f"{path}.{key}", getattr(self, key), "expected a non-negative number")
        if self.select_points < 4:
            raise SpecError(f"{path}.select_points", self.select_points,
                            "expected at least 4 points (t* is read off a cubic interpolation)")
        if not 0 <= self.search_from < 1:
            raise SpecError(f"{path}.search_from", self.search_from, "expected a t in [0, 1)")
        if self.optimizer not in OPTIMIZERS:
            raise SpecError(f"{path}.optimizer", self.optimizer, f"expected one of {', '.join(OPTIMIZERS)}")
        if not 0 <= self.momentum < 1:
            raise SpecError(f"{path}.momentum", self.momentum, "expected a number in [0, 1)")


def variants(methods: dict) -> dict:
    """``pathway_<m>`` for every registered method ``m``, on the task families ``m`` supports."""
    return {f"pathway_{name}": Method(name=f"pathway_{name}", Params=Params, loss=None, families=m.families,
                                      source=name)
            for name, m in methods.items()}
