"""best.yaml (suites/sweep/outputs.py) without training: the best parameters filled in, no sweep block,
and every relative data path made to point where the original config found it (best.yaml sits elsewhere)."""

from __future__ import annotations

import os

import yaml

from conftest import write_yaml
from suites.sweep.outputs import best_yaml


def test_best_yaml_points_at_the_original_configs_files(tmp_path):
    folder = tmp_path / "configs"
    (folder / "d").mkdir(parents=True)
    for name in ("src.txt", "tgt.txt", "dev.jsonl"):
        (folder / "d" / name).write_text("x\n")
    path = write_yaml(folder / "c.yaml", {
        "task": "seq2seq", "output_dir": "runs/s", "model": {"name_or_path": "t5-small"},
        "data": {"train": {"source": "d/src.txt", "target": "d/tgt.txt"}, "eval": "d/dev.jsonl"},
        "train": {"learning_rate": 1e-4}, "sweep": {"space": {"train.learning_rate": {"uniform": [0.1, 0.2]}}}})
    meta = {"config": path, "overrides": ["train.num_train_epochs=2"], "study": "s", "metric": "eval_loss"}
    out = str(tmp_path / "out")
    raw = yaml.safe_load(best_yaml(meta, {"train.learning_rate": 3e-4}, out))
    assert "sweep" not in raw and raw["output_dir"] == os.path.join(out, "best")
    assert raw["train"] == {"learning_rate": 3e-4, "num_train_epochs": 2}
    assert raw["data"]["train"] == {"source": str(folder / "d" / "src.txt"), "target": str(folder / "d" / "tgt.txt")}
    assert raw["data"]["eval"] == str(folder / "d" / "dev.jsonl")
    assert raw["model"]["name_or_path"] == "t5-small"  # a hub name, not a file here: left as written
