"""The `sweep:` block's space (suites/sweep/space.py): every kind drawn in range, every refusal one line
naming the key, and the command refusing a bad space with exit 2 before any trial."""

from __future__ import annotations

import os
import subprocess
import sys

import optuna
import pytest

from conftest import write_yaml
from suites.errors import UserError
from suites.sweep import space

REPO = os.path.join(os.path.dirname(__file__), "..")

SPACE = {"train.learning_rate": {"log_uniform": [1.0e-5, 1.0e-3]},
         "train.warmup_steps": {"uniform": [0.0, 0.1]},
         "tokenizer.algorithm": {"choice": ["bpe", "wordpiece"]},
         "train.per_device_train_batch_size": {"int": [8, 32], "step": 8}}


def test_every_kind_draws_inside_its_range():
    params = space.parse(SPACE)
    assert [p.kind for p in params] == ["log_uniform", "uniform", "choice", "int"]
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    for _ in range(8):
        trial = study.ask()
        got = {p.key: p.suggest(trial) for p in params}
        assert 1e-5 <= got["train.learning_rate"] <= 1e-3
        assert 0.0 <= got["train.warmup_steps"] <= 0.1
        assert got["tokenizer.algorithm"] in ("bpe", "wordpiece")
        assert got["train.per_device_train_batch_size"] in (8, 16, 24, 32)
        study.tell(trial, 0.5)
    assert space.parse({"a.b": {"int": [1, 3]}})[0].step == 1


@pytest.mark.parametrize("spec, says", [
    ({"train.learning_rate": {"gaussian": [0, 1]}}, "expected exactly one of log_uniform, uniform, choice, int"),
    ({"train.learning_rate": {"uniform": [0.1, 0.01]}}, "low 0.1 > high 0.01"),
    ({"train.learning_rate": {"log_uniform": [0.0, 0.1]}}, "log_uniform needs low > 0"),
    ({"train.learning_rate": {"uniform": [0.1]}}, "uniform takes [low, high]"),
    ({"train.learning_rate": {"uniform": ["a", 1]}}, "bounds must be numbers"),
    ({"train.learning_rate": {"uniform": [0.0, 1.0], "step": 0.1}}, "step goes with int only"),
    ({"train.learning_rate": {"uniform": [0, 1], "log_uniform": [1, 2]}}, "expected exactly one of"),
    ({"train.max_steps": {"int": [1.5, 8]}}, "bounds must be integers"),
    ({"train.max_steps": {"int": [1, 8], "step": 0}}, "step must be a positive integer"),
    ({"train.max_steps": {"int": [1, 8], "step": 3}}, "not a multiple of step 3"),
    ({"peft.r": {"choice": []}}, "choice must be a non-empty list"),
    ({"peft.r": {"choice": [[1, 2]]}}, "a choice must be a number"),
    ({"peft.r": 8}, "must be a mapping"),
    ({"output_dir": {"choice": ["a", "b"]}}, "not tunable"),
    ({"seed": {"choice": [1, 2]}}, "set sweep.seed"),
    ({}, "at least one dotted config key"),
])
def test_a_bad_range_is_one_line_naming_the_key(spec, says):
    with pytest.raises(UserError) as info:
        space.parse(spec)
    msg = str(info.value)
    assert says in msg and "\n" not in msg
    assert not spec or f"sweep.space.{next(iter(spec))}" in msg


@pytest.mark.parametrize("key, spec, says", [
    ("train.lerning_rate", {"uniform": [0.1, 0.2]}, "learning_rate"),  # unknown key, with a suggestion
    ("modle.r", {"choice": [1, 2]}, "unknown key 'modle'"),
    ("tokenizer.algorithm", {"choice": ["bpe", "sentencepiece"]}, "value 'sentencepiece'"),  # a value refused
    ("nonfinite", {"choice": ["stop", "maybe"]}, "'nonfinite' must be one of"),
])
def test_each_end_goes_through_the_config_checks(tmp_path, cls_config, key, spec, says):
    path = write_yaml(tmp_path / "c.yaml", cls_config)
    params = space.parse({key: spec})
    with pytest.raises(UserError) as info:
        space.check(path, [], params)
    msg = str(info.value)
    assert msg.startswith(f"config: 'sweep.space.{key}' value ") and says in msg and "\n" not in msg


def test_the_command_refuses_a_bad_space_before_any_trial(tmp_path, cls_config):
    cls_config["sweep"] = {"trials": 2, "space": {"train.learning_rate": {"uniform": [0.1, 0.01]}}}
    path = write_yaml(tmp_path / "c.yaml", cls_config)
    proc = subprocess.run([sys.executable, "-m", "suites.run.cli", "sweep", path], capture_output=True,
                          text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == \
        "error: config: 'sweep.space.train.learning_rate': low 0.1 > high 0.01"
    assert not os.path.exists(cls_config["output_dir"])  # nothing written, no trial


def test_a_config_without_a_sweep_block_is_refused(tmp_path, cls_config):
    from suites.sweep.worker import prepare

    with pytest.raises(UserError, match="no 'sweep:' block"):
        prepare(write_yaml(tmp_path / "c.yaml", cls_config), [], None)
    cls_config["sweep"] = {"trials": 0, "space": {"train.learning_rate": {"uniform": [0.1, 0.2]}}}
    with pytest.raises(UserError, match="'sweep.trials' must be at least 1"):
        prepare(write_yaml(tmp_path / "c.yaml", cls_config), [], None)
    cls_config["sweep"] = {"space": {"train.learning_rate": {"uniform": [0.1, 0.2]}}, "pruner": "sometimes"}
    with pytest.raises(UserError, match="'sweep.pruner' must be one of"):
        prepare(write_yaml(tmp_path / "c.yaml", cls_config), [], None)


def test_direction_is_inferred_from_the_metric(tmp_path, cls_config):
    from suites.sweep.worker import direction_of, prepare

    cls_config["sweep"] = {"space": {"train.learning_rate": {"uniform": [0.1, 0.2]}}}
    cfg, _ = prepare(write_yaml(tmp_path / "c.yaml", cls_config), [], None)
    assert direction_of(cfg, "eval_loss") == "minimize" and direction_of(cfg, "accuracy") == "maximize"
    cfg.sweep.direction = "minimize"
    assert direction_of(cfg, "accuracy") == "minimize"


def test_a_spent_time_budget_starts_no_trial(tmp_path, cls_config):
    cls_config["sweep"] = {"trials": 3, "timeout_s": 0, "space": {"train.learning_rate": {"uniform": [0.1, 0.2]}}}
    proc = subprocess.run([sys.executable, "-m", "suites.run.cli", "sweep", write_yaml(tmp_path / "c.yaml", cls_config)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "sweep.timeout_s (0 s) reached: no new trial (0/3 finished)" in proc.stderr
    out = cls_config["output_dir"]
    assert sorted(os.listdir(out)) == ["sweep.html", "sweep.journal", "sweep.json", "sweep_command.json"]


def test_a_multi_process_trial_goes_through_the_launcher():
    from suites.sweep.trial import command

    assert command("c.yaml", ["a=1"], 2)[1:6] == ["-m", "suites.run.launch", "--nproc", "2", "train"]
    assert command("c.yaml", ["a=1"], 1)[1:5] == ["-m", "suites.run.cli", "train", "c.yaml"]


def test_the_sweep_process_imports_no_torch():
    # the sweep process only checks configs and talks to the study: torch and transformers load in the
    # trials' processes; optuna loads when a sweep opens its study
    code = ("import sys, suites.run.cli, suites.sweep.worker; print(sorted(m for m in "
            "('torch', 'transformers', 'datasets', 'optuna') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"


def test_the_demo_sweep_config_is_valid():
    from suites.sweep.worker import prepare

    cfg, params = prepare(os.path.join(REPO, "configs", "demo-sweep.yaml"), [], None)
    assert cfg.sweep.trials == 6 and cfg.sweep.pruner == "median"
    assert [p.key for p in params] == ["train.learning_rate", "train.warmup_steps"]
