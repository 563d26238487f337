"""bench/gpu.py stays runnable: its CPU smoke run (--device cpu --tiny) prints and writes every table."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO, SHARED_TOFU

LOOPS = ("fine-tune", "GD unlearning", "Bezier bend (GD)")


def run_bench(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "bench" / "gpu.py"), *argv], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "MCU_TOFU_DIR": str(SHARED_TOFU)})


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory, tofu_dir) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("bench_gpu") / "gpu.json"
    done = run_bench("--device", "cpu", "--tiny", "--json-out", str(out))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(out.read_text()), done.stdout


def test_training_table_has_every_loop_with_real_throughput(tiny_report):
    report, stdout = tiny_report
    rows = {r["loop"]: r for r in report["training"]}
    assert tuple(rows) == LOOPS
    for loop, row in rows.items():
        assert row["steps"] == report["steps"] == 3, loop  # the timed steps the loop actually ran
        assert positive(row["seconds"]) and positive(row["seconds_per_step"]), loop
        assert positive(row["real_tokens_per_second"]) and positive(row["trainable_params"]), loop
        # the row's token counts are the loop's own, consistent with the ratio it logged
        assert row["padded_tokens"] / row["real_tokens"] == pytest.approx(row["padding_ratio"], rel=1e-5), loop
        assert row["mfu"] is None  # no bf16 peak for a CPU: MFU is n/a, not a made-up number
        assert loop in stdout
    # GD and the bend take a forget and a retain batch per step: about twice fine-tuning's tokens
    assert rows["GD unlearning"]["real_tokens"] > rows["fine-tune"]["real_tokens"]


def test_evaluation_table_times_one_tofu_point(tiny_report):
    report, stdout = tiny_report
    (row,) = report["evaluation"]
    assert positive(row["context_seconds"]) and positive(row["seconds_per_point"])
    assert len(row["point_seconds"]) == 1 and all(positive(s) for s in row["point_seconds"])
    assert row["rows"]["forget"] == row["rows"]["retain"] == row["eval_size"]
    # length-grouped evaluation batches of real TOFU rows: some padding, never more than issue 11's 1.25x
    assert 1.0 < row["eval_padding_ratio"] <= 1.25
    assert {"model_utility", "rouge_forget", "loss_forget"} <= set(row["metrics"])
    assert "seconds per curve point" in stdout and "target: <= 10 s" in stdout


def test_missing_tofu_folder_is_named(tmp_path):
    done = run_bench("--device", "cpu", "--tiny", "--tofu-dir", str(tmp_path / "nowhere"))
    assert done.returncode != 0
    assert "no TOFU data at" in done.stderr and "--tofu-dir" in done.stderr


def test_grid_accounting_counts_concurrent_jobs_once():
    sys.path.insert(0, str(REPO / "bench"))
    from gpu import union_seconds

    # two overlapping jobs, one inside another, one apart: 0-4 and 10-12
    assert union_seconds([(0.0, 3.0), (2.0, 4.0), (2.5, 3.5), (10.0, 12.0)]) == pytest.approx(6.0)
    assert union_seconds([]) == 0.0
