"""Provenance on every artifact and row, and ``--reproduce``: the sweep file and command that rebuild a cell.

Expected values come from outside mcu_ray: ``git rev-parse HEAD`` and ``git status`` of this
checkout, each library's own ``__version__``, /proc/cpuinfo. The Ray tests run a small digits grid
through the real command line, ``--reproduce`` one of its cells, run the printed command in a
fresh store and compare the cell's rows.
"""
from __future__ import annotations

import os
import platform
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import mcu_ray
from mcu_ray import provenance
from mcu_ray.report import build_report
from mcu_ray.store import Store
from mcu_ray.tables import load
from tests.helpers import REPO, tiny_digits_task

SWEEP = "prov"


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True).stdout.strip()


def _cpu_model() -> str:
    if os.path.exists("/proc/cpuinfo"):
        return re.search(r"^model name\s*:\s*(.*)$", Path("/proc/cpuinfo").read_text(), re.M).group(1).strip()
    return platform.processor() or platform.machine()


@pytest.fixture(scope="module")
def expected() -> dict:
    """This checkout's provenance on the CPU, from git and the libraries themselves."""
    if Path(mcu_ray.__file__).resolve().parent != REPO / "mcu_ray":
        pytest.skip(f"mcu_ray is imported from {mcu_ray.__file__}, not from this checkout {REPO}")
    try:
        commit = _git("rev-parse", "HEAD")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip(f"{REPO} is not a git checkout")
    import peft
    import ray
    import torch
    import transformers

    return {"code_commit": commit, "code_dirty": bool(_git("status", "--porcelain", "--", "mcu_ray")),
            "code_version": mcu_ray.__version__, "torch_version": torch.__version__,
            "transformers_version": transformers.__version__, "ray_version": ray.__version__,
            "peft_version": peft.__version__, "python_version": platform.python_version(),
            "device_name": f"cpu: {_cpu_model()}"}


# ----------------------------------------------------------------------------- mcu_ray.provenance


def test_describe_names_this_checkouts_commit_and_the_installed_versions(expected):
    assert provenance.describe("cpu") == {**expected, "hostname": socket.gethostname()}
    assert provenance.columns(provenance.describe("cpu")) == expected


@pytest.fixture
def fresh_code_cache():
    provenance.code.cache_clear()
    yield
    provenance.code.cache_clear()


def test_outside_a_git_checkout_the_commit_is_unknown(tmp_path, monkeypatch, fresh_code_cache):
    """A copy that no git repository tracks (an installed package), also inside another repository."""
    package = tmp_path / "project" / "mcu_ray"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    monkeypatch.setattr(mcu_ray, "__file__", str(package / "__init__.py"))
    unknown = {"code_commit": "unknown", "code_dirty": None, "code_version": mcu_ray.__version__}
    assert provenance.code() == unknown
    subprocess.run(["git", "init", "-q", str(tmp_path / "project")], check=True)  # a project holding a venv, say
    provenance.code.cache_clear()
    assert provenance.code() == unknown


def test_evaluation_tasks_that_disagree_are_all_named():
    a = {"code_commit": "c1", "code_dirty": False, "device_name": "cuda: A"}
    assert provenance.combine([a, dict(a)]) == a
    assert provenance.combine([a, {**a, "device_name": "cuda: B", "code_dirty": True}]) == {
        "code_commit": "c1", "code_dirty": True, "device_name": "cuda: A; cuda: B"}
    assert provenance.combine([a, {**a, "code_dirty": None}])["code_dirty"] is None


# ----------------------------------------------------------------------------- a real grid


def _env() -> dict:
    """The command line's environment, this checkout first on the path (of the driver and, through
    Ray's inherited environment, of its workers)."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
           "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    env.pop("RAY_AIR_NEW_OUTPUT", None)
    return env


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=600, env=_env(),
                          cwd=cwd)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def store_a(tmp_path_factory) -> Path:
    """A two-cell digits grid (Met: ga/rl and rl/ga) run by ``python -m mcu_ray.sweep`` on 2 CPUs."""
    root = tmp_path_factory.mktemp("prov")
    spec = {"name": SWEEP, "settings": ["Met"], "points": 3, "tasks": [tiny_digits_task()]}
    (root / "sweep.yaml").write_text(yaml.safe_dump(spec))
    _run(["mcu_ray.sweep", "sweep.yaml", "--storage", "A", "--num-cpus", "2", "--no-report"], root)
    return root


@pytest.mark.ray
def test_every_artifact_and_row_carries_the_provenance_of_this_checkout(store_a, expected, tmp_path):
    store = Store(str(store_a / "A"))
    keys = sorted(p.name for p in (store_a / "A" / "artifacts").iterdir())
    # original, retrained, 2 endpoints, 2 bends, 1 linear + 2 Bezier curves' points
    assert [k.split("-")[0] for k in keys] == ["bend"] * 2 + ["curve"] * 3 + ["ep"] * 2 + ["orig", "retrain"]
    for key in keys:
        assert store.read_meta(key)["provenance"] == {**expected, "hostname": socket.gethostname()}, key
    for table in ("results", "barriers", "references"):
        rows = load(str(store_a / "A"), SWEEP, table)
        assert len(rows) > 0
        for name, value in expected.items():
            assert (rows[name] == value).all(), (table, name, rows[name].unique())
    results = load(str(store_a / "A"), SWEEP, "results")
    seconds = results.groupby("cell_id")["cell_seconds"]
    assert (seconds.nunique() == 1).all() and (seconds.min() > 0).all()

    page = Path(build_report(str(store_a / "A"), SWEEP, str(tmp_path / "report"))).read_text()
    provenance_section = page.split("<h2>Provenance</h2>")[1].split("</table>")[0]
    for shown in (expected["code_commit"][:12], expected["torch_version"], expected["device_name"], "fp32"):
        assert shown in provenance_section


@pytest.mark.ray
def test_the_reproduce_command_rebuilds_the_cells_rows_in_a_fresh_store(store_a, expected):
    results_a = load(str(store_a / "A"), SWEEP, "results")
    cell = results_a.loc[results_a["method_1"] == "ga", "cell_id"].iloc[0]
    shown = _run(["mcu_ray.report", "A", SWEEP, "--reproduce", cell], store_a)
    assert ("uncommitted changes" in shown.stderr) == expected["code_dirty"]  # the only warning here
    commands = [line.strip("# ") for line in shown.stdout.splitlines()
                if line.startswith("#   python -m mcu_ray.sweep")]
    assert len(commands) == 1
    args = shlex.split(commands[0])
    assert args[:3] == ["python", "-m", "mcu_ray.sweep"] and args[3] == f"{cell}.yaml"
    (store_a / args[3]).write_text(shown.stdout)  # the output is the sweep file, its comments say so
    fresh = args[args.index("--storage") + 1]
    assert not (store_a / fresh).exists()
    _run([*args[2:], "--num-cpus", "2"], store_a)

    for table in ("results", "barriers"):
        a = load(str(store_a / "A"), SWEEP, table)
        a = a[a["cell_id"] == cell].reset_index(drop=True)
        b = load(str(store_a / fresh), SWEEP, table)
        assert set(b["cell_id"]) == {cell} and len(b) == len(a) > 0
        # the sweep file that wrote them (the excerpt) and the trial's wall time differ; nothing else
        assert (a["spec_hash"] != b["spec_hash"]).all() and (b["cell_seconds"] > 0).all()
        for column in a.columns.drop(["spec_hash", "cell_seconds"]):
            if pd.api.types.is_float_dtype(a[column]):
                np.testing.assert_allclose(b[column].to_numpy(float), a[column].to_numpy(float), rtol=1e-6,
                                           atol=1e-9, equal_nan=True, err_msg=f"{table}.{column}")
            else:
                assert b[column].tolist() == a[column].tolist(), f"{table}.{column}"
