"""Early stopping: the config block, the stopping rule, and a resumed run stopping where an
uninterrupted one does (transformers' own callback restarts its counter on resume)."""

from __future__ import annotations

import copy
import json
import os
import shutil

import pytest

from suites import config
from suites.run import runner
from suites.callbacks.early_stopping import evaluations_without_improvement
from suites.errors import MISTAKES
from tests.conftest import write_yaml


def test_the_rule_counts_evaluations_since_the_best():
    assert evaluations_without_improvement([1.0, 0.9, 0.95, 0.92], greater_is_better=False, threshold=0.0) == (2, 1)
    assert evaluations_without_improvement([10, 12, 12.05, 11], greater_is_better=True, threshold=0.1) == (2, 1)
    assert evaluations_without_improvement([10, 12, 12.5], greater_is_better=True, threshold=0.1) == (0, 2)
    assert evaluations_without_improvement([3.0], greater_is_better=False, threshold=0.0) == (0, 0)


def _early(tmp_path, cls_config, name="c.yaml", **train):
    c = copy.deepcopy(cls_config)
    # learning rate 0: the eval loss never moves, so every evaluation after the first is "no better"
    c["train"] = {"max_steps": 20, "per_device_train_batch_size": 8, "learning_rate": 0.0, "use_cpu": True,
                  "eval_strategy": "steps", "eval_steps": 2, "save_steps": 2, "logging_steps": 2,
                  "save_total_limit": None, **train}
    c["early_stopping"] = {"patience": 2}
    return c, config.load(write_yaml(tmp_path / name, c))


def test_config_defaults_and_refusals(tmp_path, cls_config):
    _, cfg = _early(tmp_path, cls_config)
    assert cfg.train["metric_for_best_model"] == "loss" and cfg.train["load_best_model_at_end"] is True
    c, _ = _early(tmp_path, cls_config)
    for change, words in (({"early_stopping": {"patience": 0}}, "patience must be at least 1"),
                          ({"data": {**c["data"], "eval": None}}, "needs evaluation data"),
                          ({"train": {**c["train"], "eval_strategy": "no"}}, "eval_strategy")):
        bad = {**c, **change}
        with pytest.raises(MISTAKES) as e:
            config.load(write_yaml(tmp_path / "bad.yaml", bad))
        assert words in str(e.value) and "\n" not in str(e.value)


def test_stops_after_patience_and_resume_stops_at_the_same_step(tmp_path, cls_config):
    _, cfg = _early(tmp_path, cls_config)
    results = runner.train(cfg)
    # evaluations at steps 2 (best), 4 and 6 (no better): stop at 6, not at max_steps 20
    assert results["early_stopped_at_step"] == 6
    with open(os.path.join(cfg.output_dir, "trainer_state.json")) as fh:
        assert json.load(fh)["global_step"] == 6
    assert results["best_checkpoint"].endswith("checkpoint-2")

    # the same run cut off after step 4, then resumed: the evaluations before the cut count
    out = cfg.output_dir
    shutil.rmtree(os.path.join(out, "checkpoint-6"))
    _, cfg = _early(tmp_path, cls_config, name="c2.yaml")
    resumed = runner.train(cfg, resume=os.path.join(out, "checkpoint-4"))
    assert resumed["early_stopped_at_step"] == 6

    # resumed from checkpoint-6, where early stopping ended the run (say, killed in the final
    # evaluation): nothing more is trained, not even up to the next evaluation (issue 21)
    _, cfg = _early(tmp_path, cls_config, name="c3.yaml")
    again = runner.train(cfg, resume=True)
    assert again["early_stopped_at_step"] == 6 and again["eval_loss"] == resumed["eval_loss"]
    with open(os.path.join(out, "trainer_state.json")) as fh:
        assert json.load(fh)["global_step"] == 6
    assert max(int(n.split("-")[1]) for n in os.listdir(out) if n.startswith("checkpoint-")) == 6


def test_unreported_metric_is_named(tmp_path, cls_config):
    c, _ = _early(tmp_path, cls_config)
    c["task"] = "classification"
    c["train"]["metric_for_best_model"] = "bleu"
    with pytest.raises(MISTAKES) as e:
        cfg = config.load(write_yaml(tmp_path / "m.yaml", c))
        runner.train(cfg)
    assert "bleu" in str(e.value)
