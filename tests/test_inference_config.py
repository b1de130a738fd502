"""eval/predict of a model trained from scratch, with its own training config and a command-line
model.name_or_path (issue 16): the command line wins over model.from_config and
tokenizer.train_from_data, the training run's loss settings are kept, and the eval of a checkpoint
reproduces the eval_loss that training logged for it."""

from __future__ import annotations

import json
import os

import pytest

from suites.config import inference as inference_config
from suites.run.cli import run
from tests.conftest import write_jsonl, write_yaml
from tests.sft_common import chat_rows, sft_config
from tests.test_seq2seq import base_config, parallel_files, toy_pairs

EVERY_2 = {"max_steps": 4, "eval_strategy": "steps", "eval_steps": 2, "save_strategy": "steps", "save_steps": 2,
           "save_total_limit": None, "use_cpu": True}


def _logged_eval_loss(run_dir, step):
    with open(os.path.join(run_dir, "trainer_state.json")) as fh:
        history = json.load(fh)["log_history"]
    return next(e["eval_loss"] for e in history if e.get("step") == step and "eval_loss" in e)


def _eval_results(run_dir):
    with open(os.path.join(run_dir, "eval_results.json")) as fh:
        return json.load(fh)


def test_seq2seq_checkpoint_eval_reproduces_the_logged_loss(tmp_path, caplog):
    raw = base_config(tmp_path, parallel_files(tmp_path, toy_pairs(48), "train"),
                      parallel_files(tmp_path, toy_pairs(8, 1), "eval"), train=EVERY_2)
    cfg = write_yaml(tmp_path / "s2s.yaml", raw)
    run_dir = raw["output_dir"]
    assert run(["train", cfg, "--quiet"]) == 0

    ckpt = os.path.join(run_dir, "checkpoint-2")
    caplog.clear()
    assert run(["eval", cfg, f"model.name_or_path={ckpt}"]) == 0
    assert any("replaces the config's from-scratch model" in r.getMessage() for r in caplog.records)
    ev = _eval_results(run_dir)
    assert ev["model"] == ckpt
    # the from-scratch label smoothing (0.1) is kept: the same loss as training logged at step 2
    assert ev["eval_loss"] == pytest.approx(_logged_eval_loss(run_dir, 2), rel=1e-5)

    inp, out = parallel_files(tmp_path, toy_pairs(3, 2), "new")["source"], str(tmp_path / "pred.jsonl")
    assert run(["predict", cfg, f"model.name_or_path={run_dir}", "--input", inp, "--output", out]) == 0
    assert len(open(out).readlines()) == 3


def test_sft_checkpoint_eval_reproduces_the_logged_loss(tmp_path):
    raw = sft_config(tmp_path, chat_rows(16), chat_rows(4, 1), train={**EVERY_2, "logging_steps": 1})
    cfg = write_yaml(tmp_path / "sft.yaml", raw)
    run_dir = raw["output_dir"]
    assert run(["train", cfg, "--quiet"]) == 0
    assert run(["eval", cfg, f"model.name_or_path={run_dir}/checkpoint-2", "--quiet"]) == 0
    assert _eval_results(run_dir)["eval_loss"] == pytest.approx(_logged_eval_loss(run_dir, 2), rel=1e-5)
    inp = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": "repeat: red cat"}])
    out = str(tmp_path / "pred.jsonl")
    assert run(["predict", cfg, f"model.name_or_path={run_dir}", "--input", inp, "--output", out,
                "--quiet"]) == 0


def test_a_pretrained_config_loads_as_before(tmp_path, cls_config):
    cls_config["model"] = {"name_or_path": str(tmp_path)}
    cls_config["tokenizer"] = {}
    cfg = inference_config.load(write_yaml(tmp_path / "c.yaml", cls_config), [f"model.name_or_path={tmp_path}"])
    assert not hasattr(cfg, "inference_note") and cfg.model.name_or_path == str(tmp_path)


def test_a_missing_model_dir_is_one_line(tmp_path, cls_config, capsys):
    cfg = write_yaml(tmp_path / "c.yaml", cls_config)
    assert run(["eval", cfg, f"model.name_or_path={tmp_path}/nothing"]) == 2
    assert "directory not found" in capsys.readouterr().err
