"""Where a number came from: the code's commit, the library versions, the device.

``describe(device)`` is what every artifact's meta.json records under ``provenance`` (beside
what ``jobs.job_meta`` already records of how it was computed: precision, effective batch,
workers, seconds, and the item with its seeds), and ``columns`` the part every result-table row
carries (``mcu_ray.tables.PROVENANCE``), so that a number can be traced to the code, libraries
and hardware that produced it.

The commit is that of the mcu_ray source *this process imported* (its package folder), not of
the folder a command was started in: Ray puts the driver's working directory first on its
workers' ``sys.path``, so a driver and its workers can import different copies of mcu_ray (seen
with Ray 2.60: a script started in a checkout but importing the installed package had workers
importing the checkout's). So each process that computes something describes itself.
Computed once per process, a few milliseconds; it never raises (unknowns are "unknown").
"""
from __future__ import annotations

import importlib.metadata
import platform
import socket
import subprocess
from functools import lru_cache
from pathlib import Path

import mcu_ray

UNKNOWN = "unknown"
LIBRARIES = ("torch", "transformers", "ray", "peft")  # versions recorded beside mcu_ray's and python's
# what a row carries, in column order (mcu_ray.tables declares each); meta.json adds ``hostname``
ROW_FIELDS = ("code_commit", "code_dirty", "code_version", *(f"{name}_version" for name in LIBRARIES),
              "python_version", "device_name")


def _git(folder: Path, *args: str) -> str | None:
    """``git -C folder args`` output, or None when git is missing, fails or hangs."""
    try:
        done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@lru_cache(maxsize=1)
def code() -> dict:
    """``code_commit`` (HEAD of the git checkout holding the imported mcu_ray package, or "unknown"),
    ``code_dirty`` (uncommitted changes or new files under that package; None when unknown) and
    ``code_version`` (mcu_ray's version)."""
    package = Path(mcu_ray.__file__).resolve().parent
    # a package inside some other repository (a virtualenv in a project) is not that repository's code
    tracked = _git(package, "ls-files", "--error-unmatch", "__init__.py") is not None
    commit = _git(package, "rev-parse", "HEAD") if tracked else None
    status = _git(package, "status", "--porcelain", "--", ".") if commit else None
    return {"code_commit": commit or UNKNOWN, "code_dirty": None if status is None else bool(status),
            "code_version": mcu_ray.__version__}


@lru_cache(maxsize=1)
def versions() -> dict:
    """``<library>_version`` of torch, transformers, ray and peft as installed ("not installed"), and python's."""
    found = {}
    for name in LIBRARIES:
        try:
            found[f"{name}_version"] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[f"{name}_version"] = "not installed"
    return {**found, "python_version": platform.python_version()}


@lru_cache(maxsize=1)
def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, else what ``platform`` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or UNKNOWN


def device_name(device=None) -> str:
    """``cuda: NVIDIA H100 80GB HBM3`` or ``cpu: Intel(R) Xeon(R) ...``; ``device``: a torch device or
    its name; None: this process's default (CUDA when present, as ``placement.default_device``)."""
    import torch  # loaded already wherever a device is in play

    device = torch.device(device) if device is not None else torch.device(
        "cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        try:
            return f"cuda: {torch.cuda.get_device_name(device)}"
        except (RuntimeError, AssertionError):
            return f"cuda: {UNKNOWN}"
    return f"{device.type}: {cpu_name()}"


def describe(device=None) -> dict:
    """This process's provenance: ``ROW_FIELDS`` (code, versions, ``device``'s name) and ``hostname``."""
    return {**code(), **versions(), "device_name": device_name(device), "hostname": socket.gethostname()}


def columns(block: dict | None) -> dict:
    """A result row's provenance columns from an artifact's ``provenance`` block (nulls without one:
    artifacts written before provenance was recorded)."""
    block = block or {}
    return {name: block.get(name) for name in ROW_FIELDS}


def combine(blocks: list[dict]) -> dict:
    """One block for what several processes computed together (a curve's evaluation tasks): a field
    they agree on as it is; one they do not as their values joined by '; ' (``code_dirty``: True if
    any was dirty, else None if any is unknown)."""
    merged = {}
    for name in dict.fromkeys(k for block in blocks for k in block):
        values = [block.get(name) for block in blocks]
        if len(set(values)) == 1:
            merged[name] = values[0]
        elif name == "code_dirty":
            merged[name] = True if True in values else None
        else:
            merged[name] = "; ".join(sorted({str(v) for v in values}))
    return merged
