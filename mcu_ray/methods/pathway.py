"""Pathway unlearning (Shi & Wang 2025, "MCU", arXiv 2505.10859): a method that starts
where another one ends.

``pathway_<m>`` trains a quadratic Bezier curve from the original model (t=0) to the
endpoint of method ``m`` (t=1), only its midpoint and only a masked subset of its
tensors, and exports the point t* closest to the retrained model. The loop and its
decisions live in ``mcu_ray.pathway``; this file holds the knobs and the registration.
"""
from __future__ import annotations

from dataclasses import dataclass

from mcu_ray.methods.common import Method, UnlearnParams
from mcu_ray.spec import SpecError


@dataclass(frozen=True)
class Params(UnlearnParams):
    """``epochs`` / ``lr`` / ``batch_size`` train the curve's midpoint; a batch mixes forget and
    retain examples in proportion to Df and the retain subset (``retain_batch_size`` is unused)."""

    epochs: int = 10  # passes over Df
    lr: float = 1e-3
    batch_size: int = 32  # forget + retain examples per step
    k: float = 0.3  # fraction of all parameters the midpoint may move
    k_r: float = 0.1  # fraction of all parameters kept out first: the tensors Dr depends on most
    retain_ratio: float = 0.1  # fraction of Dr mixed into the curve's training data
    beta_low: float = 0.01  # forget weight when the retain gap is the larger one
    beta_high: float = 0.5  # forget weight when the forget gap dominates
    select_points: int = 11  # t values evaluated to choose t* (equally spaced in [0, 1])

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
        if self.select_points < 3:
            raise SpecError(f"{path}.select_points", self.select_points, "expected at least 3 points")


def variants(methods: dict) -> dict:
    """``pathway_<m>`` for every registered method ``m``, on the task families ``m`` supports."""
    return {f"pathway_{name}": Method(name=f"pathway_{name}", Params=Params, loss=None, families=m.families,
                                      source=name)
            for name, m in methods.items()}
