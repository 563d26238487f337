"""Shared fixtures: a local Ray cluster as CI allows it, and small sweep files."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session")
def _ray_shutdown():
    """Shut down whatever Ray instance the session left running."""
    import ray

    yield
    ray.shutdown()


@pytest.fixture
def ray_cluster(_ray_shutdown):
    """A 2-CPU local Ray instance, started once and shared by the tests that ask for it
    (a test that needs another cluster shuts it down; the next one starts it again)."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    return ray


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
