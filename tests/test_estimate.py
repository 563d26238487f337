"""The cost estimate: counting against hand counts, pricing that follows the counts, stored
artifacts counted as done, and the CLI on the shipped sweep files (offline, no hub)."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from mcu_ray import estimate as est
from mcu_ray.errors import SpecError
from mcu_ray.placement import Placement
from mcu_ray.plan import make_plan
from mcu_ray.spec import parse_spec
from mcu_ray.store import Store
from mcu_ray.tasks import TASKS
from tests.helpers import REPO, tiny_digits_task

# scikit-learn's digits: 1797 images, test_fraction 0.2 -> 360 test, 1437 training rows; val_fraction 0.1 ->
# 144 held out as the validation split, |D| = 1293; 5 % forget -> round(64.65) = 65
N_TRAIN, N_TEST, N_FORGET, N_VALIDATION = 1293, 360, 65, 144
N_RETAIN = N_TRAIN - N_FORGET


def tiny_spec(**task):
    return parse_spec({"name": "t", "settings": ["Rand", "Met"], "tasks": [tiny_digits_task(**task)]})


def digits_sizes(spec) -> est.Sizes:
    task = spec.tasks[0]
    data = TASKS["digits"].load(task.options, task.ratios[0])
    return est.measured_sizes(TASKS["digits"], task.options, data, batchnorm=True,
                              eval_batch=est.EvalBatch(est.SPLIT_BATCH, est.SPLIT_BATCH))


def totals(jobs, kind: str) -> est.Work:
    return sum((j.work for j in jobs if j.kind == kind), est.Work())


def test_counts_of_a_tiny_digits_sweep_match_hand_counts():
    spec = tiny_spec()
    sizes = digits_sizes(spec)
    assert (sizes.train, sizes.retain, sizes.forget, sizes.validation) == (N_TRAIN, N_RETAIN, N_FORGET, N_VALIDATION)
    plan = make_plan(spec)
    jobs = est.plan_jobs(plan, {("digits", 5.0): sizes})

    # original and retrained: 3 epochs at batch 64
    assert totals(jobs, "original") == est.Work(train_steps=3 * 21, train_examples=3 * N_TRAIN)
    assert totals(jobs, "retrained") == est.Work(train_steps=3 * 20, train_examples=3 * N_RETAIN)
    # endpoints, FO at seeds 0 and 1: GA 30 steps of 16 (digits' default steps wins over epochs) =
    # 6 passes over the 65 forget examples; RL 1 epoch of 9 batches of 8, each with 32 retain examples
    ga, rl = est.Work(30, 6 * N_FORGET), est.Work(9, N_FORGET + 9 * 32)
    assert totals(jobs, "endpoint") == ga * 2 + rl * 2
    # bends (curve_fit epochs 1: one pass over Df at the method's own batch size): Rand ga/ga and Met ga/rl
    # with GA's objective (5 batches of 16), Rand rl/rl and Met rl/ga with RL's (9 batches of 8, each with 32
    # retain examples)
    assert totals(jobs, "bend") == est.Work(5, N_FORGET) * 2 + est.Work(9, N_FORGET + 9 * 32) * 2
    # every model point: BatchNorm pass over Dr, then predictions on test, Dr and Df, at batch 256
    point = est.Work(forward_batches=5 + 2 + 5 + 1, forward_examples=N_RETAIN + N_TEST + N_RETAIN + N_FORGET)
    points = sum(j.points for j in jobs if j.kind == "evaluation")
    assert points == plan.counts()["evaluations"] == 2 + 4 + 7 * 14  # references, endpoints, 7 curves x 14
    assert totals(jobs, "evaluation") == point * points


def test_pathway_endpoint_counts_its_curve_fit_and_selection_points():
    spec = parse_spec({"name": "t", "settings": ["Rand"], "tasks": [tiny_digits_task(
        methods=["pathway_ga"], hparams={"ga": {"epochs": 1},
                                         "pathway_ga": {"epochs": 1, "batch_size": 32, "select_points": 5}})]})
    plan = make_plan(spec)
    jobs = est.plan_jobs(plan, {("digits", 5.0): digits_sizes(spec)})
    pathway = [j for j in jobs if j.kind == "endpoint" and plan.endpoints[j.done_by[1]].source]
    # retain subset round(0.5 * 1228) = 614; a batch of 32 mixes round(32 * 65 / 679) = 3 forget and 29 retain
    # examples, 22 steps; targets: forward over the validation rows and Dr; scores: gradients over Dr and Df
    # at 32; selection: forward over Df and Dr at each of the 5 t values and at t*
    fit = est.Work(train_steps=22 + 39 + 3, train_examples=N_FORGET + 22 * 29 + N_RETAIN + N_FORGET,
                   forward_batches=1 + 5 + 6 * (1 + 5),
                   forward_examples=N_VALIDATION + N_RETAIN + 6 * (N_FORGET + N_RETAIN))
    assert [j.work for j in pathway] == [fit, fit]  # seeds 0 and 1
    assert sum(j.points for j in jobs if j.kind == "evaluation") == plan.counts()["evaluations"]
    assert all(j.points == 1 + 5 for j in jobs if j.kind == "evaluation" and j.done_by[1] in
               {p.done_by[1] for p in pathway})


def test_calibrated_seconds_follow_the_counts_and_the_real_training_time():
    from mcu_ray.train import train_supervised

    placement = Placement(device="cpu")
    task, options = TASKS["digits"], tiny_spec().tasks[0].options
    data = task.load(options, 5.0)
    rates = est.measured_rates(task, options, data, placement)
    assert rates.source == "measured" and rates.train_example > 0 and rates.forward_batch + rates.forward_example > 0
    seconds = {}
    for epochs in (3, 6):
        spec = tiny_spec(options={"epochs": epochs, "width": 4})
        jobs = est.plan_jobs(make_plan(spec), {("digits", 5.0): digits_sizes(spec)})
        seconds[epochs] = rates.seconds(totals(jobs, "original"))
    assert seconds[6] == pytest.approx(2 * seconds[3])
    # the estimate of the original's training is the right order of magnitude, timed against the real loop
    # (wide bounds: on a shared 2-core machine another process's burst during either timing moves it 5x)
    model = task.new_model(options, seed=0, placement=placement)
    started = time.perf_counter()
    train_supervised(model, task, data.split("train"), epochs=6, lr=1e-3, batch_size=64, weight_decay=0.0, seed=0,
                     placement=placement)
    assert 0.1 < (time.perf_counter() - started) / seconds[6] < 10


def test_stored_artifacts_count_as_done(tmp_path):
    spec = tiny_spec()
    plan = make_plan(spec)
    before = est.estimate(spec, plan, str(tmp_path))
    assert all(row["done"] == 0 and row["device_hours"] > 0 for row in before["kinds"].values())

    store = Store(str(tmp_path))
    original = next(iter(plan.originals))
    store.save_artifact(original, {"kind": "original", "train_seconds": 1800.0})
    curve = next(c for c in plan.curves.values() if c.trained)
    store.save_artifact(curve.key, {"kind": "curve_points"})  # its 14 interior points
    after = est.estimate(spec, plan, str(tmp_path))
    kinds = after["kinds"]
    assert kinds["original"]["done"] == 1 and kinds["original"]["device_hours"] == 0
    assert kinds["original"]["stored_hours"] == pytest.approx(0.5) and kinds["original"]["stored_estimate_hours"] > 0
    assert kinds["evaluation"]["done"] == 14 and kinds["evaluation"]["jobs"] == before["kinds"]["evaluation"]["jobs"]
    assert kinds["retrained"]["done"] == kinds["bend"]["done"] == 0 and kinds["bend"]["device_hours"] > 0
    assert "done: 15 already in" in est.format_estimate(spec.name, after)


@pytest.mark.parametrize("task,message", [
    ({"name": "cifar10", "methods": ["ga"], "options": {"model": "someone/resnet-1000"}},
     r"tasks\[0\]\.options\.model: got 'someone/resnet-1000'; .*microsoft/resnet-18"),
    ({"name": "tofu", "methods": ["ga"], "ratios": [1], "options": {"source": "hub", "model": "tiny-gpt2"}},
     r"tasks\[0\]\.options\.source: got 'hub'; .*not on this machine"),
])
def test_what_it_cannot_read_offline_is_named(task, message):
    spec = parse_spec({"name": "t", "settings": ["Rand"], "tasks": [task]})
    with pytest.raises(SpecError, match=message):
        est.estimate(spec, make_plan(spec), "/nonexistent")


def run_cli(*args, home: Path):
    # no hub: offline, an endpoint nothing listens on and an empty cache, so any download attempt fails
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9",
           "HF_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "mcu_ray.sweep", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("sweep,sources", [
    ("quickstart", {"measured"}),
    ("gpu_smoke", {"measured", "flop model (counted)"}),  # phi-1.5-sized: timed on a GPU, FLOP model on a CPU
    ("full_grid", {"flop model (assumed)"}),  # hub checkpoints and datasets
])
def test_cli_estimates_the_shipped_sweeps_offline(tmp_path, sweep, sources):
    out = run_cli(f"sweeps/{sweep}.yaml", "--dry-run", "--estimate", "--json", "--storage", str(tmp_path / "store"),
                  home=tmp_path / "hf")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    kinds = result["estimate"]["kinds"]
    assert kinds["evaluation"]["jobs"] == result["evaluations"]
    assert kinds["endpoint"]["jobs"] == result["endpoints"] and kinds["bend"]["jobs"] == result["trained_curves"]
    assert all(row["device_hours"] > 0 and row["done"] == 0 for row in kinds.values())
    assert result["estimate"]["total_device_hours"] == pytest.approx(sum(row["device_hours"] for row in kinds.values()))
    assert {s for row in kinds.values() for s in row["sources"]} <= sources
    assert bool(result["estimate"]["assumptions"]) == (sweep == "full_grid")


def test_cli_table_says_what_it_assumed(tmp_path):
    out = run_cli("sweeps/full_grid.yaml", "--dry-run", "--estimate", "--storage", str(tmp_path), home=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "job kind" in out.stdout and "\ntotal " in out.stdout
    assert "llama-2-7b: 6.74e9 parameters" in out.stdout


def test_cli_refuses_estimate_without_dry_run(capsys):
    from mcu_ray.sweep import main

    with pytest.raises(SystemExit) as exit_info:
        main([str(REPO / "sweeps/quickstart.yaml"), "--estimate"])
    assert exit_info.value.code == 2 and "--dry-run" in capsys.readouterr().err


def test_progress_line_counts_cells_and_eta(capsys):
    from mcu_ray.runner import Progress

    progress = Progress(total=10, done_before=0, storage="unused")

    def trial(status="RUNNING", seconds=10.0):
        cell = {"key": "k", "task": "digits", "setting": "Rand", "methods": "ga/ga", "ratio": 2.0, "seed": 0}
        return SimpleNamespace(config={"cell": cell}, last_result={"cell_seconds": seconds}, status=status)

    finished, others = trial(), [trial(), trial(), trial("PENDING")]
    progress.on_trial_complete(0, [finished, *others], finished)
    # one cell of 10 s done, 9 left, 3 in flight (this one and 2 running): 10 * 9 / 3 = 30 s
    assert "[1/10 done, 2 running, 0 failed, ETA 30s]" in capsys.readouterr().out
