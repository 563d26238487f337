"""The sweep command line says what it will do: --print-config, --set, --only, every error at
once, --json only with --dry-run, --dry-run's done / pending cells, the mcu-ray console script."""
import json
import os
import subprocess
import sys
import tomllib

import pytest
import yaml

from mcu_ray import cli
from mcu_ray.spec import load_spec, parse_spec
from mcu_ray.sweep import main
from tests.helpers import REPO, SEVERAL, several_errors, sweep_file



def run(capsys, *args) -> tuple[int, str, str]:
    """main() in this process: (exit code, stdout, stderr)."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def dry_json(capsys, *args) -> dict:
    code, out, err = run(capsys, *args, "--dry-run", "--json")
    assert code == 0, err
    return json.loads(out)


# ----------------------------------------------------------------------------- --print-config


def test_print_config_shows_every_default_and_the_resolved_hyper_parameters(tmp_path, capsys):
    path = sweep_file(tmp_path)
    code, out, _ = run(capsys, path, "--print-config")
    assert code == 0
    printed = yaml.safe_load(out)
    assert printed["tolerance"] == {"loss": 0.01, "accuracy": 0.01, "score": 0.01, "forget_quality": 0.05}
    assert printed["curves"] == ["linear", "bezier"] and printed["bends"] == 1
    assert printed["resources"]["max_concurrent_trials"] == 2 and printed["resources"]["train"]["num_workers"] == 0
    task = printed["tasks"][0]
    assert task["settings"] == ["Rand", "Met"] and task["precision"] == "fp32"
    assert task["options"]["split_seed"] == 0 and task["options"]["width"] == 4  # a default and the file's value
    assert task["curve_fit"] == {"epochs": 1, "lr": 0.0, "batch_size": 0, "t_sampling": "arc_length",
                                 "lr_scale": "bend_weight"}
    ga = task["hparams"]["ga"]
    # the file's value, the task's tuned default, the method's default, Sophia's and the curriculum's knobs
    assert ga["epochs"] == 1 and ga["lr"] == pytest.approx(1e-4) and "weight_decay" in ga
    assert ga["so"]["rho"] == pytest.approx(0.04) and ga["cl"]["kind"] == "superloss"
    assert set(task["hparams"]) == {"ga", "rl"}
    # a sweep file itself: read back it is the same spec
    assert parse_spec(printed) == load_spec(path)


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "sweeps").glob("*.yaml")))
def test_print_config_of_every_shipped_sweep_reads_back_as_the_same_spec(name, capsys):
    path = REPO / "sweeps" / name
    code, out, err = run(capsys, path, "--print-config")
    assert code == 0, err
    assert parse_spec(yaml.safe_load(out), base_dir=path.parent) == load_spec(path)


# ----------------------------------------------------------------------------- --set


def test_set_changes_the_spec_before_it_is_checked(tmp_path, capsys):
    path = sweep_file(tmp_path)
    code, out, _ = run(capsys, path, "--print-config", "--set", "tolerance=0.05", "--set", "tasks.0.ratios=[2]",
                       "--set", "tasks[0].hparams.ga.lr=1e-3", "--set", "resources.train.grad_accum=2")
    assert code == 0
    printed = yaml.safe_load(out)
    assert printed["tolerance"]["loss"] == 0.05 and printed["tasks"][0]["ratios"] == [2.0]
    assert printed["tasks"][0]["hparams"]["ga"]["lr"] == pytest.approx(1e-3)  # 1e-4: a number, not YAML 1.1 text
    assert printed["resources"]["train"]["grad_accum"] == 2
    assert "--set tolerance=0.05" in out.splitlines()[0]  # the header says what was overridden
    # the cells follow: a 2 % forget set instead of 5 %
    assert {c["ratio"] for c in dry_json(capsys, path, "--set", "tasks.0.ratios=[2]")["cell_list"]} == {2.0}


@pytest.mark.parametrize("assignment,words", [
    ("tolerance=-1", ["tolerance: got -1", "non-negative", "(set by --set tolerance=-1)"]),
    ("tolernce=0.05", ["tolernce: got 0.05", "did you mean 'tolerance'"]),
    ("tasks.3.ratios=[2]", ["tasks[3]: missing", "a list of 1; index it with 0..0"]),
    ("tasks.0.ratios=[2", ["tasks[0].ratios: got '[2'", "not valid YAML"]),
    ("tasks.0.methods.x=ga", ["tasks[0].methods.x", "a list of 2"]),
    ("points.x=3", ["points: got 3", "a single value, not a mapping or list"]),
    ("tasks.0.hparams.ga.lr=fast", ["tasks[0].hparams.ga.lr: got 'fast'", "expected a number"]),
    ("tolerance", ["--set: got 'tolerance'", "expected key=value"]),
])
def test_a_bad_set_exits_2_naming_the_field(tmp_path, capsys, assignment, words):
    code, out, err = run(capsys, sweep_file(tmp_path), "--dry-run", "--set", assignment)
    assert code == 2 and not out
    for word in words:
        assert word in err


# ----------------------------------------------------------------------------- --only


def test_only_subsets_the_cells_and_the_artifacts_they_need(tmp_path, capsys):
    path = sweep_file(tmp_path)
    everything = dry_json(capsys, path)
    assert everything["cells"] == 4

    met = dry_json(capsys, path, "--only", "task=digits,setting=Met")
    assert [(c["setting"], c["method_1"], c["method_2"]) for c in met["cell_list"]] == [
        ("Met", "ga", "rl"), ("Met", "rl", "ga")]
    assert met["endpoints"] == 2 and met["curves"] == 3  # one line shared by both orders, two Bezier curves

    assert [c["method_1"] for c in dry_json(capsys, path, "--only", "method=ga/rl")["cell_list"]] == ["ga"]
    either = dry_json(capsys, path, "--only", "method=ga")["cell_list"]  # ga at either end
    assert sorted((c["method_1"], c["method_2"]) for c in either) == [("ga", "ga"), ("ga", "rl"), ("rl", "ga")]
    assert len(dry_json(capsys, path, "--only", "ratio=5,seed=0")["cell_list"]) == 4
    # repeated: cells matching any of them
    both = dry_json(capsys, path, "--only", "setting=Rand,method=rl", "--only", "setting=Met,method=rl/ga")
    assert sorted((c["method_1"], c["method_2"]) for c in both["cell_list"]) == [("rl", "ga"), ("rl", "rl")]


@pytest.mark.parametrize("only,words", [
    ("setting=Mett", ["--only setting: got 'Mett'", "did you mean 'Met'", "it has: Met, Rand"]),
    ("task=tofu", ["--only task: got 'tofu'", "it has: digits"]),
    ("method=ga/npo", ["--only method: got 'ga/npo'", "it has: ga, rl"]),
    ("ratio=2", ["--only ratio: got '2'", "it has: 5"]),
    ("seed=one", ["--only seed: got 'one'", "it has: 0"]),
    ("settting=Met", ["--only: got 'settting=Met'", "did you mean 'setting'"]),
    ("setting=Rand,method=ga/rl", ["selects no cell"]),
])
def test_a_bad_only_exits_2_naming_the_filter(tmp_path, capsys, only, words):
    code, out, err = run(capsys, sweep_file(tmp_path), "--dry-run", "--only", only)
    assert code == 2 and not out
    for word in words:
        assert word in err


# ----------------------------------------------------------------------------- errors and flags


def test_the_cli_prints_every_error_on_its_own_line(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(several_errors()))
    code, out, err = run(capsys, path, "--json", "--set", "seeds=[-1]")
    assert code == 2 and not out
    lines = err.splitlines()
    assert lines[0].startswith("error: --json: works with --dry-run only")
    paths = [line.split(": ")[2] for line in lines[1:]]  # error: <file>: <field>: ...
    assert paths == SEVERAL[:2] + ["seeds[0]"] + SEVERAL[2:]  # in the order of the file's checks
    assert lines[3].endswith("(set by --set seeds=[-1])")


def test_json_without_dry_run_is_refused_before_anything_runs(tmp_path, capsys):
    storage = tmp_path / "store"
    code, out, err = run(capsys, sweep_file(tmp_path), "--json", "--storage", storage)
    assert code == 2 and not out
    assert err.strip() == ("error: --json: works with --dry-run only (without --dry-run the sweep would run); "
                           "add --dry-run")
    assert not storage.exists()


def test_flags_that_cannot_go_together_are_refused(tmp_path, capsys):
    path = sweep_file(tmp_path)
    code, _, err = run(capsys, path, "--print-config", "--dry-run")
    assert code == 2 and "--print-config" in err
    code, _, err = run(capsys, path, "--restart", "--only", "setting=Rand")
    assert code == 2 and "--restart" in err


# ----------------------------------------------------------------------------- --dry-run after a run


@pytest.mark.ray
def test_dry_run_lists_done_and_pending_cells_after_a_quiet_run(tmp_path, capsys):
    """Run one cell of four through the CLI (--only), quietly; --dry-run then calls it done, the rest pending."""
    path, storage = sweep_file(tmp_path), tmp_path / "store"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_AIR_NEW_OUTPUT", None)
    proc = subprocess.run([sys.executable, "-m", "mcu_ray", "sweep", path, "--storage", str(storage),
                           "--only", "setting=Rand,method=rl", "--num-cpus", "2", "--no-report"],
                          capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    # quiet by default: the plan line, one line per cell, the summary; no Ray or Tune start-up messages
    lines = proc.stdout.splitlines()
    assert lines[0].endswith("(--only: 1 of 4 cells)")
    assert any(line.startswith("[1/1 done") and "rl/rl" in line for line in lines)
    assert lines[-1].startswith("grid done") and "1 cells run" in lines[-1]
    assert len(lines) == 3, proc.stdout
    for chatter in ("Configuration for experiment", "View detailed results", "Started a local Ray instance",
                    "INFO", "Running in local mode"):
        assert chatter not in proc.stdout + proc.stderr

    listing = dry_json(capsys, path, "--storage", storage)
    status = {(c["setting"], c["method_1"], c["method_2"]): c["status"] for c in listing["cell_list"]}
    assert status == {("Rand", "ga", "ga"): "pending", ("Rand", "rl", "rl"): "done",
                      ("Met", "ga", "rl"): "pending", ("Met", "rl", "ga"): "pending"}
    assert (listing["done"], listing["pending"]) == (1, 3)

    code, out, _ = run(capsys, path, "--storage", storage, "--dry-run")
    assert code == 0
    assert "cells in " in out and "1 done, 3 pending" in out
    assert "digits Rand: 2 cells, 1 done, 1 pending" in out and "digits Met: 2 cells, 0 done, 2 pending" in out
    done_line = next(line for line in out.splitlines() if line.strip().startswith("done"))
    assert "rl/rl" in done_line and "ratio=5% seed=0" in done_line


# ----------------------------------------------------------------------------- mcu-ray


def test_mcu_ray_console_script_dispatches_to_sweep_and_report(tmp_path, capsys):
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["mcu-ray"] == "mcu_ray.cli:main"

    assert cli.main(["sweep", sweep_file(tmp_path), "--dry-run", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cells"] == 4
    with pytest.raises(SystemExit) as exit_:
        cli.main(["report", str(tmp_path / "nothing")])  # the report's own refusal: no results there
    assert exit_.value.code == 2
    assert cli.main(["swep"]) == 2 and "did you mean 'sweep'" in capsys.readouterr().err
    assert cli.main(["--help"]) == 0 and "sweep" in capsys.readouterr().out
