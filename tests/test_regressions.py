"""Regressions found reviewing a batch of changes: each test failed before its fix."""

from __future__ import annotations

from suites import config
from suites.run.launch import build
from tests.conftest import write_yaml


def test_fsdp_true_passes_the_train_type_check(tmp_path, cls_config):
    # TrainingArguments annotates fsdp as `str | None`, but `fsdp: true` is how FSDP is switched on
    # (docs/distributed.md) and what `scripts/launch --fsdp` passes; a list is the legacy string
    path = write_yaml(tmp_path / "c.yaml", cls_config)
    cmd, _ = build(["--nproc", "2", "--fsdp", path])
    overrides = [a for a in cmd if a.startswith("train.fsdp")]
    assert "train.fsdp=true" in overrides
    cfg = config.load(path, overrides)
    assert cfg.train["fsdp"] is True and cfg.train["fsdp_config"].endswith("fsdp2.json")
    assert config.load(path, ["train.fsdp=[full_shard, auto_wrap]"]).train["fsdp"] == ["full_shard", "auto_wrap"]
    assert config.load(path, ["train.fsdp=full_shard auto_wrap"]).train["fsdp"] == "full_shard auto_wrap"


def test_classification_predict_keeps_the_empty_lines_of_a_plain_text_input(tmp_path, cls_config):
    # `predict --input texts.txt`: one input a line, empty lines kept so that output row n answers
    # line n (the check refused the whole file at its first empty line)
    from tasks.classification import ClassificationTask

    cfg = config.load(write_yaml(tmp_path / "c.yaml", cls_config))
    txt = tmp_path / "in.txt"
    txt.write_text("the plot was great\n\nboring and dull\n")
    ds = ClassificationTask(cfg).load("predict", str(txt))["predict"]
    assert ds[cfg.data.text_column][:] == ["the plot was great", "", "boring and dull"]


def test_duplicate_yaml_key_on_one_line_is_an_error(tmp_path):
    # a flow mapping holds both keys on one line; the check compared line numbers and kept the last
    import pytest

    from suites.errors import MISTAKES

    path = tmp_path / "c.yaml"
    path.write_text("task: classification\ntrain: {learning_rate: 1.0e-4, learning_rate: 2.0e-4}\n")
    with pytest.raises(MISTAKES, match=r"duplicate key 'learning_rate' \(first given on line 2\)"):
        config.load(str(path))
    assert config.yaml_load("x: {<<: {a: 1}, a: 2}\n") == {"x": {"a": 2}}  # a merge key is still overridable
