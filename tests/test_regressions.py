"""Regressions found reviewing a batch of changes: each test failed before its fix."""

from __future__ import annotations

from suites import config
from suites.launch import build
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
