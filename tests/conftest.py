"""Shared fixtures: a local Ray cluster as CI allows it, and small sweep files."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session")
def ray_cluster():
    """A 2-CPU local Ray instance for the whole session; always shut down."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def tiny_digits_task(**overrides) -> dict:
    """A digits task block small enough for a grid to finish in well under a minute."""
    task = {
        "name": "digits",
        "ratios": [5],
        "methods": ["ga", "rl"],
        "options": {"epochs": 3, "width": 4},
        "hparams": {"ga": {"epochs": 1}, "rl": {"epochs": 1}},
        "curve_fit": {"epochs": 1},
    }
    task.update(overrides)
    return task
