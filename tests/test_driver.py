"""What both commands (sweep, search) do before any work: refuse an unwritable storage, exit 2 with error
lines, start a local Ray instance that keeps the worker processes a sweep needs."""
import os
import time

import pytest
import ray

from mcu_ray.driver import check_storage, fail, fail_all, start_ray, workers_kept
from mcu_ray.errors import SpecError
from mcu_ray.spec import ResourcesSpec, ScalingSpec


def test_fail_prints_one_error_line_and_exits_with_its_code(capsys):
    with pytest.raises(SystemExit) as exit_:
        fail("storage: got x; cannot be written")
    assert exit_.value.code == 2 and capsys.readouterr().err == "error: storage: got x; cannot be written\n"
    with pytest.raises(SystemExit) as exit_:
        fail_all(["a: one", "b: two"], code=1)
    assert exit_.value.code == 1 and capsys.readouterr().err == "error: a: one\nerror: b: two\n"


def test_a_storage_that_cannot_be_written_is_refused(tmp_path):
    check_storage(str(tmp_path / "runs"))  # created and written
    assert (tmp_path / "runs" / ".write_check").read_bytes() == b"ok"
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(SpecError) as caught:
        check_storage(str(blocker / "runs"))
    assert caught.value.path == "storage" and "cannot be written" in caught.value.allowed


@ray.remote
def worker_pid() -> int:
    time.sleep(0.5)  # two at once run in two processes
    return os.getpid()


@ray.remote
class Trial:
    def pid(self) -> int:
        return os.getpid()


@pytest.mark.ray
def test_a_local_instance_keeps_its_evaluation_workers_beside_the_trials(_ray_shutdown):
    """Three trial actors on 2 CPUs, as the quickstart runs them: the two evaluation workers, left idle
    for a few seconds, are still there for the next two tasks. Ray's default limit (the CPU count) counts
    the actors, so it ended one after a second idle and later evaluation tasks paid new processes."""
    if ray.is_initialized():
        ray.shutdown()
    start_ray(None, 2, ResourcesSpec(max_concurrent_trials=3, trial_cpus=0.25, eval_cpus=0.6))
    try:
        trials = [Trial.options(num_cpus=0.25).remote() for _ in range(3)]
        assert len(set(ray.get([t.pid.remote() for t in trials]))) == 3

        def two_evaluations() -> set:
            return set(ray.get([worker_pid.options(num_cpus=0.6).remote() for _ in range(2)]))

        first = two_evaluations()
        time.sleep(4)  # Ray ends a worker idle for over a second while the pool is over its limit
        assert len(first) == 2 and two_evaluations() == first
    finally:
        ray.shutdown()


def test_the_workers_kept_are_one_per_cpu_and_the_sweeps_actors():
    assert workers_kept(ResourcesSpec(max_concurrent_trials=3), 2) == 2 + 3 + 1  # Train's local mode: no actors
    # each trial's training job: a Train controller and 4 workers; and the build coordinator
    assert workers_kept(ResourcesSpec(max_concurrent_trials=2, train=ScalingSpec(num_workers=4)), 16) == 16 + 2 * 6 + 1
