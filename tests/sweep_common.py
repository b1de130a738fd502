"""Shared by the sweep tests: a tiny classification config with a sweep block, and the command."""

from __future__ import annotations

import json
import os
import subprocess
import sys

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
SPACE = {"train.learning_rate": {"log_uniform": [1.0e-4, 1.0e-2]}}


def sweep_config(cls_config, trials=2, max_steps=4, **sweep):
    """cls_config made short: `max_steps` steps, an evaluation every 2, the eval loss minimized."""
    cls_config["data"]["max_length"] = 16
    cls_config["train"].update({"max_steps": max_steps, "eval_strategy": "steps", "eval_steps": 2,
                                "report_to": "none"})
    cls_config["train"].pop("num_train_epochs", None)
    cls_config["sweep"] = {"trials": trials, "metric": "loss", "space": dict(SPACE), **sweep}
    return cls_config


def sweep_cmd(path, *args):
    return [sys.executable, "-m", "suites.run.cli", "sweep", path, *args]


def run_sweep(path, *args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run(sweep_cmd(path, *args), capture_output=True, text=True, cwd=REPO, timeout=timeout)


def read_sweep(out) -> dict:
    with open(os.path.join(out, "sweep.json")) as fh:
        return json.load(fh)
