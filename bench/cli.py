"""What both benchmarks share: running the real CLI (`python -m mcu_ray.sweep ...`, its progress
echoed, the rest logged) and the job-ledger kinds that count as training."""
from __future__ import annotations

import subprocess
import time

PROGRESS_PREFIXES = ("sweep ", "[", "grid done", "error", "Traceback")  # CLI lines worth echoing
TRAINING_KINDS = ("original", "retrained", "endpoint", "curve")  # job-ledger kinds that train a model


def run_sweep_cli(cmd: list[str], cwd, env: dict, log_path: str, label: str) -> tuple[int, float, float]:
    """Run ``cmd``, echoing progress lines and writing everything to ``log_path``.

    Returns (exit code, launch time as a Unix timestamp, wall seconds); on failure the end
    of the log is printed, prefixed with ``label``.
    """
    launched, started = time.time(), time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:  # Ray's own chatter goes to the log only
            log.write(line)
            if line.startswith(PROGRESS_PREFIXES):
                print("  | " + line, end="", flush=True)
        returncode = proc.wait()
    wall = time.perf_counter() - started
    if returncode != 0:
        with open(log_path) as log:
            tail = log.readlines()[-30:]
        print(f"{label}: the CLI exited with {returncode}; the end of its output:\n" + "".join(tail), flush=True)
    return returncode, launched, wall
