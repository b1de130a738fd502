"""Classification edge cases from a user's review: label names, predict inputs, held-out labels,
options a problem type would ignore, best-model metrics, LoRA run dirs."""

from __future__ import annotations

import copy
import json

import pytest

from suites import config

from suites.run import runner
from suites.run.cli import run
from suites.errors import MISTAKES
from tests.conftest import sentiment_rows, write_jsonl, write_yaml


def _cfg(tmp_path, cls_config, loss=None, args=None, **data):
    c = copy.deepcopy(cls_config)
    c["data"].update(data)
    c["train"] = {"max_steps": 2, "save_strategy": "no", "use_cpu": True, "per_device_train_batch_size": 8,
                  **(args or {})}
    if loss:
        c["loss"] = loss
    return config.load(write_yaml(tmp_path / "c.yaml", c))


def test_whole_float_labels_match_integer_labels(tmp_path, cls_config):
    """pandas writes an int column with gaps as 0.0/1.0: those are the labels 0 and 1."""
    rows = sentiment_rows(16)
    tr = write_jsonl(tmp_path / "t.jsonl", [dict(r, label=float(r["label"] == "pos")) for r in rows])
    ev = write_jsonl(tmp_path / "e.jsonl", [dict(r, label=int(r["label"] == "pos")) for r in rows])
    _, task, _, trainer, data = runner.build(_cfg(tmp_path, cls_config, train=tr, eval=ev), "train")
    assert task.problem_type == "single_label_classification" and task.labels == ["0", "1"]
    assert data["eval"]["labels"] == data["train"]["labels"]


def test_label_codes_with_leading_zeros_stay_apart(tmp_path, cls_config):
    rows = sentiment_rows(16)
    p = write_jsonl(tmp_path / "t.jsonl", [dict(r, label="01" if r["label"] == "pos" else "1") for r in rows])
    _, task, _, _, _ = runner.build(_cfg(tmp_path, cls_config, train=p, eval=p), "train")
    assert task.labels == ["1", "01"]


def test_predict_ignores_the_label_column(tmp_path, cls_config):
    """An input file that still has a label column, with a label unseen in training and an empty one."""
    cfg_path = write_yaml(tmp_path / "c.yaml", dict(cls_config, train={"max_steps": 1, "use_cpu": True,
                                                                       "save_strategy": "no"}))
    assert run(["train", cfg_path]) == 0
    inp = write_jsonl(tmp_path / "in.jsonl", [{"text": "great plot", "label": "meh"},
                                              {"text": "dull", "label": None}])
    out = tmp_path / "out.jsonl"
    assert run(["predict", cfg_path, "--input", inp, "--output", str(out)]) == 0
    preds = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(preds) == 2 and all(sum(p["probabilities"].values()) == pytest.approx(1, abs=1e-5) for p in preds)


def test_regression_refuses_non_finite_targets(tmp_path, cls_config):
    p = tmp_path / "r.csv"
    p.write_text("text,label\n" + "".join(f"row {i},{i * 0.5}\n" for i in range(6)) + "row x,nan\n")
    with pytest.raises(MISTAKES, match=r"r.csv: line 8: label 'nan' is not a finite number"):
        runner.build(_cfg(tmp_path, cls_config, train=str(p), eval=None), "train")


def test_held_out_rows_share_the_label_map(tmp_path, cls_config):
    """data.eval_fraction: a label whose only rows land in the held-out part is still a label."""
    rows = sentiment_rows(40) + [{"text": "so so", "label": "mixed"}]
    p = write_jsonl(tmp_path / "t.jsonl", rows)
    for seed in range(6):  # some seeds hold the one 'mixed' row out
        c = _cfg(tmp_path, cls_config, train=p, eval=None, eval_fraction=0.3)
        c.seed = seed
        _, task, _, _, _ = runner.build(c, "train")
        assert task.labels == ["mixed", "neg", "pos"]


@pytest.mark.parametrize("loss", [{"class_weights": "auto"}, {"class_weights": [1, 2]}, {"label_smoothing": 0.1}])
def test_loss_options_a_multi_label_run_would_ignore(tmp_path, cls_config, loss):
    p = write_jsonl(tmp_path / "ml.jsonl", [{"text": f"t{i}", "label": ["a", "b"][: 1 + i % 2]} for i in range(8)])
    with pytest.raises(MISTAKES, match=r"applies to single-label classification, not to multi_label"):
        runner.build(_cfg(tmp_path, cls_config, loss=loss, train=p, eval=p), "train")


def test_best_model_metric_must_exist(tmp_path, cls_config):
    rows = sentiment_rows(24)
    for i, r in enumerate(rows):
        r["label"] = ["neg", "pos", "mixed"][i % 3]
    p = write_jsonl(tmp_path / "three.jsonl", rows)
    # three labels: no binary 'f1' (transformers would raise a KeyError after the first epoch)
    with pytest.raises(MISTAKES, match=r"'f1' is not a metric of this run .*f1_macro"):
        runner.build(_cfg(tmp_path, cls_config, train=p, eval=p, args={"metric_for_best_model": "f1"}), "train")
    for ok in ("f1_macro", "eval_mcc", "accuracy", "loss"):
        runner.build(_cfg(tmp_path, cls_config, train=p, eval=p, args={"metric_for_best_model": ok}), "train")


def test_lower_is_better_for_regression_errors(tmp_path, cls_config):
    p = write_jsonl(tmp_path / "rg.jsonl", [{"text": f"t{i}", "label": i / 3} for i in range(8)])
    for metric, expect in (("mse", False), ("eval_mae", False), ("pearson", True)):
        cfg = _cfg(tmp_path, cls_config, train=p, eval=p, args={"metric_for_best_model": metric})
        _, _, _, trainer, _ = runner.build(cfg, "train")
        assert trainer.args.greater_is_better is expect, metric
    cfg = _cfg(tmp_path, cls_config, train=p, eval=p, args={"metric_for_best_model": "mse", "greater_is_better": True})
    assert runner.build(cfg, "train")[3].args.greater_is_better is True  # the user's choice stands


@pytest.mark.parametrize("loss, message", [
    ({"label_smoothing": 1.5}, r"label_smoothing must be at least 0 and below 1"),
    ({"class_weights": [1, "a"]}, r"class_weights must be 'auto' or a list of 2 non-negative numbers"),
    ({"class_weights": [-1, 2]}, r"class_weights must be 'auto' or a list of 2 non-negative numbers"),
    ({"class_weights": [0, 0]}, r"class_weights must be 'auto' or a list of 2 non-negative numbers"),
], ids=["smoothing", "text-weight", "negative-weight", "zero-weights"])
def test_bad_loss_options_fail_before_training(tmp_path, cls_config, loss, message):
    """torch would raise mid-training (or train on a negative loss); the run dir is not left behind."""
    with pytest.raises(MISTAKES, match=message):
        runner.build(_cfg(tmp_path, cls_config, loss=loss), "train")


def test_multi_label_threshold_is_a_probability(tmp_path, cls_config):
    p = write_jsonl(tmp_path / "ml.jsonl", [{"text": f"t{i}", "label": ["a", "b"][: 1 + i % 2]} for i in range(8)])
    with pytest.raises(MISTAKES, match=r"multi_label_threshold is a probability"):
        runner.build(_cfg(tmp_path, cls_config, loss={"multi_label_threshold": 1.5}, train=p, eval=p), "train")
