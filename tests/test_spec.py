import json
import subprocess
import sys

import pytest
import yaml

from mcu_ray.errors import SpecError, SpecErrors
from mcu_ray.spec import Tolerances, load_spec, parse_spec
from tests.helpers import DELETE, SEVERAL, good, mutate, refused, several_errors


def test_good_spec_resolves_defaults():
    spec = parse_spec(good())
    task = spec.tasks[0]
    assert spec.points == 16 and spec.curves == ("linear", "bezier")
    assert task.ratios == (5.0,)
    # the sweep file's value wins over the task's tuned default, which wins over the method's
    assert task.hparams["ga"].params.epochs == 1
    assert task.hparams["ga"].params.lr == pytest.approx(1e-4)
    assert task.hparams["ga"].so.rho == pytest.approx(0.04)  # SOUL's default
    assert task.hparams["ga"].cl.kind == "superloss"
    assert task.options.width == 4 and task.options.split_seed == 0
    assert spec.tolerance == Tolerances(loss=0.01, accuracy=0.01, score=0.01, forget_quality=0.05)


def test_tolerance_is_a_number_for_losses_or_a_mapping_per_family():
    assert parse_spec({**good(), "tolerance": 0.05}).tolerance == Tolerances(loss=0.05)
    spec = parse_spec({**good(), "tolerance": {"accuracy": 0.02, "forget_quality": 0.1}})
    assert spec.tolerance == Tolerances(loss=0.01, accuracy=0.02, forget_quality=0.1)


# (where, new value, field path the message must name, words the message must contain)
BAD_INPUTS = [
    ((["name"], DELETE), "name", "required"),
    ((["name"], "a/b"), "name", "letters"),
    ((["settigns"], ["Rand"]), "settigns", "did you mean 'settings'"),
    ((["settings"], ["Rnd"]), "settings[0]", "did you mean 'Rand'"),
    ((["settings"], ["Rand", "Rand"]), "settings[1]", "duplicate"),
    ((["curves"], ["cubic"]), "curves[0]", "allowed: linear, bezier, polychain"),
    ((["bends"], 0), "bends", ">= 1"),
    ((["seeds"], [-1]), "seeds[0]", "non-negative integer"),
    ((["points"], 2), "points", "at least 3"),
    ((["points"], "16"), "points", "expected an integer"),
    ((["tolerance"], -0.1), "tolerance", "non-negative"),
    ((["tolerance"], {"los": 0.1}), "tolerance.los", "did you mean 'loss'"),
    ((["tolerance"], {"accuracy": -1}), "tolerance.accuracy", "non-negative"),
    ((["tolerance"], {"forget_quality": 1.5}), "tolerance.forget_quality", "strictly between 0 and 1"),
    ((["tasks"], []), "tasks", "at least one"),
    ((["tasks", 0, "name"], "digit"), "tasks[0].name", "did you mean 'digits'"),
    ((["tasks", 0, "ratios"], [0]), "tasks[0].ratios[0]", "strictly between 0 and 100"),
    ((["tasks", 0, "ratios"], [100]), "tasks[0].ratios[0]", "strictly between 0 and 100"),
    ((["tasks", 0, "ratios"], [2, 2]), "tasks[0].ratios[1]", "duplicate"),
    ((["tasks", 0, "methods"], []), "tasks[0].methods", "at least one"),
    ((["tasks", 0, "methods"], ["ga"]), "tasks[0].methods", "pair two different methods"),
    ((["tasks", 0, "methods"], ["ga", "gaa"]), "tasks[0].methods[1]", "did you mean 'ga'"),
    ((["tasks", 0, "options"], {"epoch": 3}), "tasks[0].options.epoch", "did you mean 'epochs'"),
    ((["tasks", 0, "options"], {"epochs": 0}), "tasks[0].options.epochs", ">= 1"),
    ((["tasks", 0, "options"], {"lr": "fast"}), "tasks[0].options.lr", "expected a number"),
    ((["tasks", 0, "hparams"], {"ga": {"lr": -1}}), "tasks[0].hparams.ga.lr", "positive"),
    ((["tasks", 0, "hparams"], {"ga": {"step": 3}}), "tasks[0].hparams.ga.step", "allowed keys"),
    ((["tasks", 0, "hparams"], {"npo": {}}), "tasks[0].hparams.npo", "not in this task's methods"),
    ((["tasks", 0, "curve_fit"], {"epochs": -1}), "tasks[0].curve_fit.epochs", "0 (the method's)"),
    ((["tasks", 0, "curve_fit"], {"t_sampling": "sobol"}), "tasks[0].curve_fit.t_sampling", "arc_length, uniform"),
    ((["resources"], {"train": {"num_workers": -1}}), "resources.train.num_workers", "data parallel"),
    ((["resources"], {"train": {"grad_accum": 0}}), "resources.train.grad_accum", ">= 1"),
    ((["resources"], {"train": {"num_workers": 2, "strategy": "fsdp2"}}), "resources.train.strategy", "did you mean"),
    ((["resources"], {"train": {"num_workers": 1, "strategy": "fsdp"}}), "resources.train.num_workers",
     "expected 2 or more"),
    ((["resources"], {"train": {"num_workers": 4, "grad_accum": 8}}), "tasks[0].hparams.ga.batch_size",
     "at least 32"),
    ((["precision"], "bf15"), "precision", "did you mean 'bf16'"),
    ((["tasks", 0, "precision"], "fp16"), "tasks[0].precision", "allowed: auto, fp32, bf16-mixed, bf16"),
    ((["resources"], {"max_concurrent_trials": 0}), "resources.max_concurrent_trials", ">= 1"),
    ((["resources"], {"train": {"use_gpu": "yes"}}), "resources.train.use_gpu", "true or false"),
]


@pytest.mark.parametrize("change,path,words", BAD_INPUTS, ids=[b[1] + ":" + b[2] for b in BAD_INPUTS])
def test_bad_input_names_field_value_and_allowed(change, path, words):
    error = refused(change, path, words)
    if change[1] is not DELETE:
        assert repr(error.value) in str(error)  # the value found is quoted back


def test_yaml_syntax_error_reports_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: t\ntasks:\n  - name: digits\n    ratios: [2, 4\n")
    with pytest.raises(SpecError, match=r"line \d+"):
        load_spec(path)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "mcu_ray.sweep", *args], capture_output=True, text=True, timeout=120)


def test_cli_refuses_bad_spec_with_exit_2(tmp_path):
    spec = mutate((["tasks", 0, "ratios"], [150]))
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(spec))
    proc = run_cli(str(path), "--storage", str(tmp_path / "store"))
    assert proc.returncode == 2
    assert "tasks[0].ratios[0]" in proc.stderr and "150" in proc.stderr
    assert not (tmp_path / "store").exists()  # refused before anything was written


def test_cli_dry_run_json_counts(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(good()))
    proc = run_cli(str(path), "--dry-run", "--json")
    assert proc.returncode == 0, proc.stderr
    counts = json.loads(proc.stdout)
    # 2 methods: Rand -> 2 cells, Met -> 2 ordered pairs; 4 endpoints (2 methods x seeds s, s+1)
    assert counts["cells"] == 4 and counts["endpoints"] == 4
    # linear: Rand 2 + Met 1 (shared by both orders); bezier: Rand 2 + Met 2
    assert counts["curves"] == 7
    assert counts["evaluations"] == 1 + 1 + 4 + 7 * 14
    for key in ("cells", "endpoints", "curves", "evaluations"):
        assert isinstance(counts[key], int)


def test_cli_refuses_gpus_on_a_machine_without_any(tmp_path):
    spec = good()
    spec["resources"] = {"train": {"use_gpu": True}}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(spec))
    proc = run_cli(str(path), "--storage", str(tmp_path / "store"), "--num-cpus", "1", "--no-report")
    assert proc.returncode == 2
    assert "resources.train.use_gpu: got True; this machine's Ray instance has no GPU" in proc.stderr
    assert not (tmp_path / "store" / "t").exists()  # nothing of the sweep was written


def test_cli_refuses_unwritable_storage(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(good()))
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    proc = run_cli(str(path), "--storage", str(blocker / "store"))
    assert proc.returncode == 2 and "storage" in proc.stderr and "cannot be written" in proc.stderr


def test_cli_runs_with_a_relative_storage_path(tmp_path):
    """The default storage is relative (./mcu_runs): Tune and Train need it resolved."""
    spec = good()
    spec["settings"], spec["points"] = ["Rand"], 3
    spec["tasks"][0]["methods"] = ["rl"]
    spec["tasks"][0]["hparams"] = {"rl": {"epochs": 1}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    proc = subprocess.run([sys.executable, "-m", "mcu_ray.sweep", "s.yaml", "--storage", "runs", "--num-cpus", "2",
                           "--report-dir", "report"], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert list((tmp_path / "runs" / "t" / "results").rglob("*.parquet"))
    assert (tmp_path / "report" / "index.html").is_file()


def test_every_independent_error_is_reported_at_once():
    with pytest.raises(SpecErrors) as err:
        parse_spec(several_errors())
    assert [e.path for e in err.value.errors] == SEVERAL
    assert isinstance(err.value, SpecError) and err.value.path == "tolernce"  # read as one error: the first
    assert str(err.value).splitlines() == [str(e) for e in err.value.errors]


def test_a_check_that_needs_a_wrong_value_is_skipped_not_reported_twice():
    # an unknown task: its methods, options and hparams cannot be checked, its curve_fit can
    spec = good()
    spec["tasks"][0].update(name="digit", curve_fit={"epochs": -1})
    with pytest.raises(SpecErrors) as err:
        parse_spec(spec)
    assert [e.path for e in err.value.errors] == ["tasks[0].name", "tasks[0].curve_fit.epochs"]
    # unknown methods: the hyper-parameters of the others are not called "not in this task's methods"
    spec = good()
    spec["tasks"][0]["methods"] = ["ga", "rll"]
    with pytest.raises(SpecError) as err:
        parse_spec(spec)
    assert not isinstance(err.value, SpecErrors) and err.value.path == "tasks[0].methods[1]"
