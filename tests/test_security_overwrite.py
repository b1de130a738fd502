"""--overwrite deletes only a run (issue 21, item 4): a folder is a run's when it holds our marker (or
is a run from before markers), and only what a run writes is deleted there; a project folder or a
base-model folder is refused with exit 2, nothing deleted."""

from __future__ import annotations

import json
import os

from suites.run import run_dir
from suites.run.cli import run
from tests.conftest import write_yaml


def _short(cls_config, out):
    cls_config["output_dir"] = str(out)
    cls_config["data"]["max_train_samples"] = 16
    cls_config["train"] = {"max_steps": 1, "save_strategy": "steps", "save_steps": 1, "use_cpu": True}
    return cls_config


def _tree(folder) -> dict:
    """relative path -> bytes of every file under folder."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, folder)] = fh.read()
    return out


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error: ")
    return err[-1]


def test_a_project_folder_is_not_overwritten(tmp_path, cls_config, capsys):
    """`output_dir: .` in a project: its README, configs and data are not a run's."""
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    (project / "README.md").write_text("# my project\n")
    (project / "data" / "notes.txt").write_text("keep me\n")
    (project / "config.json").write_text('{"mine": true}\n')
    before = _tree(project)
    cfg = write_yaml(tmp_path / "c.yaml", _short(cls_config, project))
    assert run(["train", cfg, "--overwrite"]) == 2
    msg = _error(capsys)
    assert f"output_dir {project} was not written by trainsuite" in msg and "nothing deleted" in msg
    assert run(["train", cfg]) == 2  # without --overwrite: refused as well, it would replace README.md
    assert "which a run would overwrite" in _error(capsys)
    assert _tree(project) == before


def test_a_base_model_folder_is_not_overwritten(tmp_path, cls_config, capsys):
    model = tmp_path / "bert-base"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "bert"}\n')
    (model / "model.safetensors").write_bytes(b"\0" * 64)
    (model / "vocab.txt").write_text("[PAD]\n")
    before = _tree(model)
    cfg = write_yaml(tmp_path / "c.yaml", _short(cls_config, model))
    assert run(["train", cfg, "--overwrite"]) == 2
    assert f"output_dir {model} was not written by trainsuite (no {run_dir.MARKER})" in _error(capsys)
    assert _tree(model) == before


def test_overwrite_clears_the_runs_files_and_keeps_the_users(tmp_path, cls_config, capsys):
    out = tmp_path / "run"
    cfg = write_yaml(tmp_path / "c.yaml", _short(cls_config, out))
    assert run(["train", cfg]) == 0
    marker = json.loads((out / run_dir.MARKER).read_text())
    assert marker["trainsuite_run"] == run_dir.MARKER_VERSION and marker["created"]
    (out / "notes.txt").write_text("my notes\n")
    (out / "analysis").mkdir()
    (out / "analysis" / "plot.py").write_text("print(1)\n")
    (out / "checkpoint-7").mkdir()  # a stale checkpoint of the earlier run: deleted
    (out / "runs" / "other-run").mkdir(parents=True)  # not TensorBoard's: a user's runs/ folder stays
    (out / "runs" / "other-run" / "results.json").write_text("{}")
    assert run(["train", cfg]) == 2
    assert "holds a previous run; pass --resume" in _error(capsys)
    assert run(["train", cfg, "--overwrite"]) == 0
    left = sorted(os.listdir(out))
    assert "notes.txt" in left and (out / "analysis" / "plot.py").read_text() == "print(1)\n"
    assert "checkpoint-7" not in left and "checkpoint-1" in left and run_dir.MARKER in left
    assert (out / "runs" / "other-run" / "results.json").read_text() == "{}"
    assert [n for n in left if n not in run_dir.run_entries(out)] == ["analysis", "notes.txt", "runs"]


def test_a_run_from_before_the_marker_can_still_be_overwritten(tmp_path, cls_config):
    out = tmp_path / "run"
    cfg = write_yaml(tmp_path / "c.yaml", _short(cls_config, out))
    assert run(["train", cfg]) == 0
    os.remove(out / run_dir.MARKER)  # as written by an earlier trainsuite
    (out / "notes.txt").write_text("my notes\n")
    assert run_dir.is_run(str(out))
    assert run(["train", cfg, "--overwrite"]) == 0
    assert (out / "notes.txt").exists() and (out / run_dir.MARKER).exists()
    # a checkpoint alone (the run was stopped before it finished) is a run too
    for name in ("results.json", "trainer_state.json"):
        os.remove(out / name)
    os.remove(out / run_dir.MARKER)
    assert run_dir.is_run(str(out))


def test_a_folder_with_nothing_a_run_writes_takes_a_run(tmp_path, cls_config):
    """A folder of data and configs: the run goes beside them, and a later --overwrite keeps them."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "train.jsonl").write_text("{}\n")
    cfg = write_yaml(tmp_path / "c.yaml", _short(cls_config, project))
    assert run(["train", cfg]) == 0
    assert (project / run_dir.MARKER).exists() and (project / "results.json").exists()
    assert run(["train", cfg, "--overwrite"]) == 0
    assert (project / "train.jsonl").read_text() == "{}\n"


def test_tensorboard_logs_are_a_runs_but_not_any_runs_folder(tmp_path):
    out = tmp_path / "run"
    (out / "runs" / "Dec05_host").mkdir(parents=True)
    (out / "runs" / "Dec05_host" / "events.out.tfevents.1.host").write_bytes(b"x")
    (out / "figures").mkdir()
    (out / "figures" / "loss.png").write_bytes(b"x")
    assert run_dir.run_entries(str(out)) == ["figures", "runs"]
    (out / "figures" / "my-plot.svg").write_text("<svg/>")
    assert run_dir.run_entries(str(out)) == ["runs"]


def test_only_rank_0_decides(tmp_path, monkeypatch):
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    monkeypatch.setenv("RANK", "1")
    run_dir.guard(str(model), overwrite=True, resume=None)  # other ranks neither check nor delete
    assert (model / "config.json").exists()
