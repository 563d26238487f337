"""What the sweep and search commands do as Ray's driver process around their work: refuse with
exit 2 and one line per problem, check the storage before any work, start (or join) Ray quietly.

Shared by ``mcu_ray.sweep`` and ``mcu_ray.search``; the sweep runs the search, so these live below both.
"""
from __future__ import annotations

import logging
import os
import sys

from mcu_ray.errors import SpecError
from mcu_ray.spec import ResourcesSpec


def fail(message: str, code: int = 2):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def fail_all(messages: list[str], code: int = 2):
    """Every problem on its own line, then exit."""
    for message in messages:
        print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def check_storage(storage: str) -> None:
    """Refuse, before any work, a storage root that cannot be written."""
    from mcu_ray.store import Store

    try:
        Store(storage).write_bytes(b"ok", ".write_check")
    except Exception as exc:  # noqa: BLE001 - any failure here means "cannot write"
        raise SpecError("storage", storage, f"cannot be written ({type(exc).__name__}: {exc})") from None


def quiet_ray(verbose: bool) -> None:
    """Ray's and Tune's start-up messages only with --verbose; the per-cell lines stay either way.

    Before Ray is imported: Tune's new output engine prints its configuration box and
    result paths even at verbose=0, its legacy reporter honours verbose=0 (runner.py asks
    for 0). Ray's own loggers are set at ray.init (``logging_level``).
    """
    if verbose:
        return
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    for name in ("ray", "ray.tune", "ray.train"):
        logging.getLogger(name).setLevel(logging.WARNING)


def start_ray(address: str | None, num_cpus: int | None, resources: ResourcesSpec, verbose: bool = False) -> None:
    """Join the cluster at ``address`` (or RAY_ADDRESS); otherwise start a private local instance
    that keeps as many idle workers as ``resources`` needs (``workers_kept``).

    ``verbose``: Ray's INFO messages, and the workers' output copied to this terminal.
    """
    import ray

    quiet = {"log_to_driver": verbose, "logging_level": logging.INFO if verbose else logging.WARNING}
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, **quiet)
        return
    # A private, loopback-only instance for this process: no dashboard, no auth token to manage.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
             _system_config={"num_workers_soft_limit": workers_kept(resources, num_cpus or os.cpu_count() or 1)},
             **quiet)


def workers_kept(resources: ResourcesSpec, num_cpus: int) -> int:
    """Ray's soft limit on worker processes for a local instance: one per CPU for tasks (Ray's own
    default) plus the sweep's long-lived actors (its trials, each training job's Train controller
    and workers when ``num_workers`` > 0, the build coordinator).

    Ray's default (the CPU count) counts those actors too. With three trials on two CPUs (the quickstart
    until it ran two) the pool was always over it, so Ray ended an evaluation worker idle for a second, and the
    next evaluation task paid a new process: torch's import, the task's data, the tokenizer, again.
    Six evaluation processes ran the quickstart instead of two (bench/README.md).
    """
    train = resources.train.num_workers
    actors = resources.max_concurrent_trials * (1 + (train + 1 if train else 0)) + 1
    return num_cpus + actors
