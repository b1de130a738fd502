"""One trial: `trainsuite train CONFIG overrides output_dir=OUTPUT_DIR/trial-007` in its own process
(through scripts/launch when sweep.nproc > 1), so that a crash or an out-of-memory kill is one failed
trial and memory never piles up across trials. The trial's process dies with the sweep process.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass

from .study import TRIAL_ENV, TRIAL_FILE, metric_key


def trial_dir(output_dir: str, number: int) -> str:
    return os.path.join(output_dir, f"trial-{number:03d}")


@dataclass
class Outcome:
    state: str  # complete | pruned | failed
    value: float | None
    reason: str = ""


def command(config_path: str, overrides: list[str], nproc: int) -> list[str]:
    if nproc > 1:
        return [sys.executable, "-m", "suites.run.launch", "--nproc", str(nproc), "train", config_path,
                *overrides, "--quiet"]
    return [sys.executable, "-m", "suites.run.cli", "train", config_path, *overrides, "--quiet"]


def dies_with_parent():
    """The preexec_fn of a child process of the sweep (a trial, a worker, an evaluation): it ends with the
    sweep process (Linux; None elsewhere)."""
    return _die_with_parent if sys.platform.startswith("linux") else None


def _die_with_parent() -> None:
    """(Linux) the trial gets SIGTERM when the sweep process dies, even by SIGKILL: no orphan run goes on
    writing into a trial directory the next sweep re-queues."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG


def run(config_path: str, overrides: list[str], run_dir: str, env_value: str | None, metric: str,
        nproc: int = 1) -> Outcome:
    """env_value: the study and trial the run reports to; None for a run outside the study (the baseline),
    which replaces what an interrupted earlier attempt left in run_dir."""
    os.makedirs(os.path.dirname(run_dir) or ".", exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != TRIAL_ENV}
    if env_value is not None:
        env[TRIAL_ENV] = env_value
    cmd = command(config_path, [*overrides, f"output_dir={json.dumps(run_dir)}"], nproc)
    if env_value is None:
        cmd.append("--overwrite")
    with open(os.path.join(os.path.dirname(run_dir), f"{os.path.basename(run_dir)}.log"), "wb") as log:
        code = subprocess.call(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                               preexec_fn=dies_with_parent())
    if code != 0:
        return Outcome("failed", None, f"exit code {code}, see {os.path.basename(run_dir)}.log")
    pruned = read_json(os.path.join(run_dir, TRIAL_FILE)).get("pruned")
    value = read_json(os.path.join(run_dir, "results.json")).get(metric_key(metric))
    if pruned:
        return Outcome("pruned", value)
    if value is None:
        return Outcome("failed", None, f"results.json holds no {metric_key(metric)}")
    return Outcome("complete", float(value))


def read_json(path: str) -> dict:
    """A JSON file a run wrote; {} when it is missing or cut short."""
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return {}
