"""Experiment tracking: every cell of a grid, with its metrics, in MLflow or TensorBoard.

The sweep file's ``tracking`` (``spec.TrackingSpec``) adds one of Ray Tune's own logger callbacks
to the grid's Tuner: ``MLflowLoggerCallback`` (an MLflow run per cell, in the sweep's experiment)
or the TensorBoardX one (a TensorBoard run per cell). Both log the trial's config, the cell's
identity (task, setting, methods, ratio, seed, key), as parameters, and the trial's one result,
whose metrics ``cell_metrics`` reads off the rows the cell has just written: nothing is computed
for tracking and nothing stored depends on it.
"""
from __future__ import annotations

import os
from pathlib import Path

from ray.tune.logger import TBXLoggerCallback

from mcu_ray.spec import TrackingSpec


def trial_name(trial) -> str:
    """A cell's trial, MLflow run and TensorBoard run, named by the cell's identity and key
    (``digits_Rand_ga-rl_ratio=5_seed=0_cell-1f...``: unique, and the tables' ``cell_id``)."""
    cell = trial.config["cell"]
    return (f"{cell['task']}_{cell['setting']}_{cell['methods'].replace('/', '-')}_ratio={cell['ratio']:g}_"
            f"seed={cell['seed']}_{cell['key']}")


def cell_metrics(rows: list[dict], barrier_rows: list[dict]) -> dict:
    """What a cell's trial reports for tracking, taken from its results and barriers rows.

    Per curve kind: ``ok`` (1, or 0 when it diverged), ``length`` in parameter space and each
    metric's chord ``deviation`` (the barriers table's, positive = a barrier); per endpoint
    (``endpoint_1`` at t=0, ``endpoint_2`` at t=1, the results table's rows) each metric.
    Nested: Tune's loggers flatten it to ``linear/deviation/loss_retain``, ``endpoint_1/acc_test``.
    """
    out: dict = {}
    for row in barrier_rows:
        curve = out.setdefault(row["curve"], {"ok": float(row["status"] == "ok"), "deviation": {}})
        if row["status"] == "ok":
            curve["length"] = row["curve_length"]
            curve["deviation"][row["metric"]] = row["deviation"]
    metrics = {row["metric"] for row in barrier_rows if row["status"] == "ok"}
    for name, t in (("endpoint_1", 0.0), ("endpoint_2", 1.0)):
        row = next((r for r in rows if r["status"] == "ok" and r["t"] == t), None)
        if row is not None:  # the same endpoint on every curve of the cell: the first ok curve's row
            out[name] = {m: row[m] for m in sorted(metrics)}
    return out


class CellTBXLogger(TBXLoggerCallback):
    """Ray Tune's TensorBoardX logger, writing a cell's events to ``<logdir>/<trial name>`` rather than
    to the trial's folder: one TensorBoard run per cell, named by the cell, in one log folder."""

    def __init__(self, logdir: str):
        super().__init__()
        self.logdir = logdir

    def log_trial_start(self, trial) -> None:
        if trial in self._trial_writer:  # a retried trial: a new event file beside the old one
            self._trial_writer[trial].close()
        self._trial_writer[trial] = self._summary_writer_cls(str(Path(self.logdir, str(trial))), flush_secs=30)
        self._trial_result[trial] = {}


def tracking_callbacks(tracking: TrackingSpec, storage: str, sweep: str, spec_hash: str) -> list:
    """The Tune logger callback that ``tracking`` asks for (none: no callback)."""
    if tracking.kind == "none":
        return []
    location = tracking.location(storage, sweep)
    if tracking.kind == "tensorboard":
        return [CellTBXLogger(location)]
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    if location.startswith("file:"):
        # MLflow 3 keeps its file store (the default ``mlruns`` folder) in maintenance mode and refuses it
        # unless asked; a database or server URI in tracking.uri needs no such switch
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return [MLflowLoggerCallback(tracking_uri=location, experiment_name=tracking.experiment or sweep,
                                 tags={"mcu_ray.sweep": sweep, "mcu_ray.spec_hash": spec_hash})]
