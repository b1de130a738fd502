"""The command-line contract: train/eval/predict, results.json keys, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from suites.run.cli import run
from tests.conftest import write_jsonl, write_yaml

RESULT_KEYS = {"eval_loss", "eval_accuracy", "train_loss", "task", "model", "world_size",
               "num_train_samples", "train_runtime_s"}


def test_train_eval_predict_end_to_end(tmp_path, cls_config, capsys):
    cfg = write_yaml(tmp_path / "c.yaml", cls_config)
    out = cls_config["output_dir"]
    assert run(["train", cfg, "train.num_train_epochs=8", "train.learning_rate=3e-3"]) == 0
    results = json.load(open(os.path.join(out, "results.json")))
    assert RESULT_KEYS <= set(results), RESULT_KEYS - set(results)
    assert results["task"] == "classification" and results["world_size"] == 1
    assert results["num_train_samples"] == 96
    assert results["eval_accuracy"] > 0.6  # the toy task is learnable
    for name in ("config.json", "model.safetensors", "tokenizer.json", "run_config.yaml",
                 "confusion_matrix.json", "confusion_matrix.png"):
        assert os.path.exists(os.path.join(out, name)), name
    # the same run again without --overwrite is refused: a previous run is never silently replaced
    assert run(["train", cfg]) == 2
    assert "holds a previous run" in capsys.readouterr().err

    # eval of a from-scratch config evaluates the model trained into output_dir
    assert run(["eval", cfg]) == 0
    again = json.load(open(os.path.join(out, "eval_results.json")))
    assert abs(again["eval_accuracy"] - results["eval_accuracy"]) < 1e-9
    assert json.load(open(os.path.join(out, "results.json"))) == results  # the training results stay

    rows = [{"text": "the movie was great"}, {"text": "boring dull plot"}, {"text": "a"}]
    inp = write_jsonl(tmp_path / "in.jsonl", rows)
    pred = str(tmp_path / "pred.jsonl")
    assert run(["predict", cfg, "--input", inp, "--output", pred]) == 0
    lines = [json.loads(x) for x in open(pred)]
    assert len(lines) == 3
    for line in lines:
        assert line["label"] in ("neg", "pos")
        assert abs(sum(line["probabilities"].values()) - 1) < 1e-4
        assert line["score"] == max(line["probabilities"].values())


def test_overwrite_replaces_previous_run(tmp_path, cls_config):
    cls_config["data"]["max_train_samples"] = 16
    cls_config.pop("train")
    cls_config["train"] = {"max_steps": 1, "save_strategy": "no", "use_cpu": True}
    cfg = write_yaml(tmp_path / "c.yaml", cls_config)
    assert run(["train", cfg]) == 0
    assert run(["train", cfg, "--overwrite"]) == 0


def test_user_mistake_exits_2_without_traceback(tmp_path, cls_config):
    cls_config["data"]["text_column"] = "review"
    cfg = write_yaml(tmp_path / "c.yaml", cls_config)
    proc = subprocess.run([sys.executable, "-m", "suites.run.cli", "train", cfg], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: data.train:") and "no column 'review'" in lines[0]


def test_help_lists_commands():
    proc = subprocess.run([sys.executable, "-m", "suites.run.cli", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    for cmd in ("train", "eval", "predict"):
        assert cmd in proc.stdout


def test_predict_input_missing(tmp_path, cls_config, capsys):
    cfg = write_yaml(tmp_path / "c.yaml", cls_config)
    assert run(["predict", cfg, "--input", str(tmp_path / "nope.jsonl"), "--output", "x.jsonl"]) == 2
    assert "--input: file not found" in capsys.readouterr().err


def test_overrides_after_options(tmp_path, cls_config, capsys):
    cfg = write_yaml(tmp_path / "c.yaml", cls_config)
    # an override after --input/--output is read as an override (here it points at a missing model dir)
    inp = write_jsonl(tmp_path / "in.jsonl", [{"text": "a"}])
    code = run(["predict", cfg, "--input", inp, "--output", str(tmp_path / "o.jsonl"), "data.max_length=8"])
    assert code == 2 and "no trained model" in capsys.readouterr().err
    import pytest

    with pytest.raises(SystemExit):
        run(["predict", cfg, "--input", inp, "--output", "o.jsonl", "--bogus"])


def test_bad_data_leaves_no_half_made_run(tmp_path, cls_config, capsys):
    bad = write_jsonl(tmp_path / "bad_eval.jsonl", [{"text": "a b", "label": "pos"}, {"text": "c", "label": "meh"}])
    cls_config["data"]["eval"] = bad
    cfg = write_yaml(tmp_path / "c.yaml", cls_config)
    assert run(["train", cfg]) == 2
    assert "bad_eval.jsonl: line 2: unknown label 'meh'" in capsys.readouterr().err
    assert not os.path.exists(cls_config["output_dir"])


def test_results_into_a_closed_pipe_is_no_traceback():
    # `trainsuite predict ... | head -3` closed the pipe before the JSON was written: BrokenPipeError traceback
    child = ("import os; from suites.run.cli import _print_results\n"
             "r, w = os.pipe(); os.close(r); os.dup2(w, 1)\n"
             "_print_results({'eval_loss': 0.5, 'rows': list(range(20000))})\n")
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, \
        proc.stderr


def test_rouge_scoring_logs_nothing_at_info(caplog):
    # first hour, seq2seq: every evaluation logged "INFO absl: Using default tokenizer." (rouge-score)
    import logging

    from suites.run.cli import _setup_logging
    from tasks.metrics.generation import generation_metrics

    _setup_logging(False)
    with caplog.at_level(logging.INFO):
        generation_metrics(["a cat sat"], ["a cat sat"], [3])
    assert "Using default tokenizer" not in caplog.text
