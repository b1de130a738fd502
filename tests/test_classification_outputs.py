"""Issue 16, items 10 and 12: what a classification run leaves behind. Multi-label and regression runs write
eval_predictions.jsonl (the report's worst-examples table); weights are saved with the mode of every other
file; predict gives 0/1 labels back as the numbers they were."""

from __future__ import annotations

import json
import logging
import os
import random
import stat

import pytest

from suites.run import cli
from tests.conftest import write_jsonl, write_yaml


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _rows(n, seed, label):
    rng = random.Random(seed)
    words = "great lovely awful boring the movie plot was".split()
    return [{"text": " ".join(rng.sample(words, 4)), "label": label(rng)} for _ in range(n)]


def _train(tmp_path, cls_config, train_rows, eval_rows, *overrides):
    cls_config["data"]["train"] = write_jsonl(tmp_path / "tr.jsonl", train_rows)
    cls_config["data"]["eval"] = write_jsonl(tmp_path / "ev.jsonl", eval_rows)
    cfg = write_yaml(tmp_path / "c.yaml", cls_config)
    assert cli.run(["train", cfg, *overrides]) == 0
    return cfg, cls_config["output_dir"]


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_int_labels_come_back_as_ints_and_weights_are_0644(tmp_path, cls_config, umask_022):
    cfg, out = _train(tmp_path, cls_config, _rows(32, 0, lambda r: r.randint(0, 1)),
                      _rows(8, 1, lambda r: r.randint(0, 1)), "train.save_strategy=epoch")
    assert _mode(os.path.join(out, "config.json")) == 0o644
    assert _mode(os.path.join(out, "model.safetensors")) == 0o644  # safetensors alone wrote 0600
    (ckpt,) = [d for d in os.listdir(out) if d.startswith("checkpoint-")]
    assert _mode(os.path.join(out, ckpt, "model.safetensors")) == 0o644
    pred = str(tmp_path / "p.jsonl")
    assert cli.run(["predict", cfg, "--input", write_jsonl(tmp_path / "in.jsonl", [{"text": "great movie"}]),
                    "--output", pred]) == 0
    (row,) = [json.loads(x) for x in open(pred)]
    assert row["label"] in (0, 1) and isinstance(row["label"], int)
    evals = [json.loads(x) for x in open(os.path.join(out, "eval_predictions.jsonl"))]
    assert all(isinstance(r["label"], int) and isinstance(r["predicted"], int) for r in evals)


def test_multi_label_run_writes_eval_predictions_and_the_report_table(tmp_path, cls_config):
    def labels(r):
        return r.sample(["a", "b", "c"], r.randint(1, 2))

    cfg, out = _train(tmp_path, cls_config, _rows(32, 0, labels), _rows(8, 1, labels))
    rows = [json.loads(x) for x in open(os.path.join(out, "eval_predictions.jsonl"))]
    assert len(rows) == 8
    for r in rows:
        assert set(r) == {"text", "label", "predicted", "confidence", "p_label"}
        assert isinstance(r["label"], list) and set(r["label"]) <= {"a", "b", "c"}
        assert 0 <= r["p_label"] <= 1 and 0 <= r["confidence"] <= 1
        if r["label"] == r["predicted"]:
            assert r["p_label"] == r["confidence"]
    html = open(os.path.join(out, "report.html"), encoding="utf-8").read()
    assert "Worst-classified eval examples" in html


def test_regression_run_writes_eval_predictions_and_a_plain_log_line(tmp_path, cls_config, caplog):
    with caplog.at_level(logging.INFO, logger="trainsuite"):
        cfg, out = _train(tmp_path, cls_config, _rows(32, 0, lambda r: round(r.random() * 5, 2)),
                          _rows(8, 1, lambda r: round(r.random() * 5, 2)))
    assert "regression, 0 labels" not in caplog.text
    assert "classification: regression" in caplog.text
    rows = [json.loads(x) for x in open(os.path.join(out, "eval_predictions.jsonl"))]
    assert len(rows) == 8
    for r in rows:
        assert set(r) == {"text", "label", "predicted", "error"}
        assert r["error"] == pytest.approx(r["predicted"] - r["label"], abs=1e-5)
    html = open(os.path.join(out, "report.html"), encoding="utf-8").read()
    assert "with the largest error" in html
