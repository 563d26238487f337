"""Shared fixtures: a local Ray cluster as CI allows it, TOFU's test data, a synthetic sweep to report on. Helpers that tests
import are in ``tests/helpers.py``."""
from __future__ import annotations

import os

import pytest

from tests.helpers import SHARED_TOFU, write_report_sweep

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


@pytest.fixture(scope="session")
def tofu_dir():
    """TOFU's files (shared/ beside the checkout, or MCU_TOFU_DIR); a failure, not a skip, when absent."""
    if not (SHARED_TOFU / "full.jsonl").is_file():
        pytest.fail(f"TOFU test data not found at {SHARED_TOFU}: check out shared/ beside the repo or set MCU_TOFU_DIR")
    return SHARED_TOFU


@pytest.fixture(scope="session")
def report_storage(tmp_path_factory) -> str:
    """A store root holding the synthetic sweep of ``helpers.write_report_sweep`` (read only: a test that
    changes it works on a copy)."""
    root = str(tmp_path_factory.mktemp("report_store"))
    write_report_sweep(root)
    return root
