"""Drawing a report's figures on every CPU: one process per CPU, each drawing whole figures.

A grid's report is a few dozen figures of up to a few hundred panels each, and matplotlib draws
on one core; figures are independent, so they are drawn side by side. Worker processes are
spawned (not forked: the parent holds Arrow's and torch's threads), import the figure module
once, and take the largest figures first so that none is left alone at the end.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Callable

import pandas as pd

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Drawing:
    """One figure to draw: ``draw(path, *args)``, a function of ``mcu_ray.report.figures``."""

    draw: Callable
    path: str
    args: tuple

    @property
    def size(self) -> int:
        """Rows of the frames it draws: how long it will take, roughly."""
        return sum(len(a) for a in self.args if isinstance(a, pd.DataFrame))


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity, where the platform tells)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def draw_all(drawings: list[Drawing], workers: int | None = None) -> None:
    """Draw every figure; ``workers`` processes (None: one per available CPU; 1: in this process)."""
    workers = min(workers or available_cpus(), len(drawings))
    if workers <= 1:
        for d in drawings:
            d.draw(d.path, *d.args)
            logger.info("wrote %s", d.path)
        return
    largest_first = sorted(drawings, key=lambda d: -d.size)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [(d.path, pool.submit(d.draw, d.path, *d.args)) for d in largest_first]
        for path, future in futures:
            future.result()  # a figure that failed raises here, with its traceback
            logger.info("wrote %s", path)
