"""A new user's first mistakes: each is one line naming the key or file, exit code 2, no traceback,
and stdout holds only the command's JSON result."""

from __future__ import annotations

import json
import os

import pytest

from suites import config
from suites.run import cli
from suites.errors import MISTAKES
from tests.conftest import config_error, write_yaml


def error_of(tmp_path, cfg, overrides=()) -> str:
    return config_error(tmp_path, cfg, overrides)


@pytest.mark.parametrize("override, expected", [
    ("train.learning_rate=abc", "'train.learning_rate' must be float, got 'abc'"),
    ("train.max_steps=1.5", "'train.max_steps' must be int, got 1.5"),
    ("train.fp16=1", "'train.fp16' must be bool, got 1"),
    ("train.eval_strategy=[epoch]", "'train.eval_strategy' must be"),
])
def test_train_values_are_type_checked_before_training(tmp_path, cls_config, override, expected):
    # learning_rate: abc used to end in a traceback (ValueError in a format string) after the
    # tokenizer had been trained
    assert expected in error_of(tmp_path, cls_config, [override])


def test_train_values_of_the_right_type_pass(tmp_path, cls_config):
    cfg = config.load(write_yaml(tmp_path / "c.yaml", cls_config),
                      ["train.learning_rate=1", "train.warmup_steps=0.1", "train.report_to=[none]",
                       "train.resume_from_checkpoint=true", "train.eval_steps=null"])
    assert cfg.train["learning_rate"] == 1 and cfg.train["resume_from_checkpoint"] is True
    # a whole number written with an exponent (YAML reads 1e3 as a float) is taken for an int field
    cfg = config.load(write_yaml(tmp_path / "c.yaml", cls_config), ["train.max_steps=1e3"])
    assert cfg.train["max_steps"] == 1000 and isinstance(cfg.train["max_steps"], int)


def test_duplicate_yaml_key_is_an_error_naming_both_lines(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("task: classification\ntrain:\n  learning_rate: 1.0e-4\n  learning_rate: 2.0e-4\n")
    with pytest.raises(MISTAKES) as info:
        config.load(str(path))
    assert "line 4, column 3: malformed YAML: duplicate key 'learning_rate' (first given on line 3)" in str(
        info.value)


def test_yaml_merge_key_may_be_overridden(tmp_path, cls_config):
    text = ("defaults: &d {num_train_epochs: 1, learning_rate: 1.0e-3}\n"
            "x: {<<: *d, learning_rate: 2.0e-3}\n")
    assert config.yaml_load(text)["x"] == {"num_train_epochs": 1, "learning_rate": 2.0e-3}


@pytest.mark.parametrize("override, hint", [
    ("train.num_beams=4", "(did you mean 'generation.num_beams'?)"),
    ("train.max_length=64", "(did you mean 'data.max_length' or 'sft.max_length' or 'preference.max_length'?)"),
    ("train.text_column=t", "(did you mean 'data.text_column'?)"),
    ("data.learning_rate=1", "(did you mean 'train.learning_rate'?)"),
    ("model.seed=1", "(did you mean top-level 'seed' or 'sweep.seed'?)"),
    ("train.lr=1", "(did you mean 'train.learning_rate'?)"),
    ("train.batch_size=8", "(did you mean 'train.per_device_train_batch_size'?)"),
    ("train.early_stopping_patience=2", "(did you mean 'early_stopping.patience'?)"),
    ("peft.lora_alpha=8", "(did you mean 'peft.alpha'?)"),
    ("generation.max_length=8", "(did you mean 'generation.max_new_tokens'?)"),
    ("data.lable_column=x", "(did you mean 'label_column'?)"),
])
def test_unknown_key_names_the_section_it_belongs_to(tmp_path, cls_config, override, hint):
    assert error_of(tmp_path, cls_config, [override]).endswith(hint)


def test_model_type_typo_is_one_short_line(tmp_path, cls_config):
    cls_config["model"]["from_config"]["model_type"] = "bret"
    msg = error_of(tmp_path, cls_config)
    assert msg == ("config: model.from_config.model_type 'bret' is not a transformers model type "
                   "(e.g. bert, t5, llama) (did you mean 'bert'?)")


def test_report_to_unknown_or_missing_integration(tmp_path, cls_config, monkeypatch):
    from transformers.integrations import integration_utils

    msg = error_of(tmp_path, cls_config, ["train.report_to=tensorbord"])
    assert "train.report_to: unknown integration 'tensorbord'" in msg and "did you mean 'tensorboard'" in msg
    # was a RuntimeError traceback from inside Trainer.__init__
    monkeypatch.setattr(integration_utils, "get_available_reporting_integrations", lambda: [])
    assert "train.report_to: wandb is not installed; pip install wandb" in error_of(
        tmp_path, cls_config, ["train.report_to=wandb"])


def test_override_without_equals_after_an_option(tmp_path, cls_config, capsys):
    path = write_yaml(tmp_path / "c.yaml", cls_config)
    assert cli.run(["train", path, "--quiet", "train.lr"]) == 2
    assert capsys.readouterr().err.strip() == "error: override 'train.lr': expected dotted.key=value"


def test_overwrite_and_resume_exclude_each_other(tmp_path, cls_config, capsys):
    path = write_yaml(tmp_path / "c.yaml", cls_config)
    assert cli.run(["train", path, "--overwrite", "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --overwrite and --resume exclude each other") and err.count("\n") == 1
    assert not os.path.exists(cls_config["output_dir"])


def test_stdout_holds_only_the_results_json(tmp_path, cls_config, capfd):
    # the tokenizer trainer's progress (native code, file descriptor 1) and the Trainer's log dicts
    # used to come before the JSON on stdout
    cls_config["data"]["max_train_samples"] = 32
    path = write_yaml(tmp_path / "c.yaml", cls_config)
    assert cli.run(["train", path]) == 0
    out, err = capfd.readouterr()
    assert json.loads(out)["task"] == "classification"
    assert "'train_loss'" in err  # the log lines went to stderr
    assert cli.run(["eval", path, "--quiet"]) == 0
    out, err = capfd.readouterr()
    assert "eval_accuracy" in json.loads(out) and "'eval_loss'" not in err


def test_report_and_init_output_mistakes_exit_2(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "results.json").write_text('{"eval_accuracy": 0.5}')
    assert cli.run(["report", str(run_dir), "--output", str(run_dir)]) == 2
    assert "is a directory" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["run"] and os.listdir(run_dir) == ["results.json"]
    assert cli.run(["init", "sft", "--output", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    assert cli.run(["init", "sft", "--output", str(run_dir / "results.json" / "x.yaml")]) == 2
    assert capsys.readouterr().err.startswith("error: init: cannot write")
