"""model.gguf_file without the real model: config-time refusals (a missing file, an architecture that
transformers cannot read, a task that does not fit) and `package:` naming a package's own folder. The
conversion itself runs on the packaged SmolLM2 in tests/test_real_llm.py."""

from __future__ import annotations

import os
import sys

import pytest

from tests.conftest import config_error, write_jsonl
from tests.sft_common import chat_rows

gguf = pytest.importorskip("gguf")


def write_gguf(path, arch):
    """A header-only GGUF file: an architecture and one tiny tensor, nothing a model could load from."""
    import numpy as np

    w = gguf.GGUFWriter(str(path), arch)
    w.add_tensor("token_embd.weight", np.zeros((4, 2), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return str(path)


def gguf_config(tmp_path, folder, name, task="sft"):
    return {"task": task, "output_dir": str(tmp_path / "run"),
            "model": {"name_or_path": str(folder), "gguf_file": name},
            "data": {"train": write_jsonl(tmp_path / "train.jsonl", chat_rows(4))}}


def test_missing_gguf_file_is_named(tmp_path):
    msg = config_error(tmp_path, gguf_config(tmp_path, tmp_path, "absent.Q4_0.gguf"))
    assert "absent.Q4_0.gguf" in msg and str(tmp_path) in msg


def test_unreadable_architecture_is_refused_naming_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINSUITE_MODEL_CACHE", str(tmp_path / "models"))
    write_gguf(tmp_path / "m.gguf", "nosuchnet")
    msg = config_error(tmp_path, gguf_config(tmp_path, tmp_path, "m.gguf"))
    assert "'nosuchnet'" in msg and "cannot read" in msg
    assert not os.path.exists(tmp_path / "models")  # nothing converted, nothing half-written


def test_task_must_fit_the_architecture(tmp_path):
    write_gguf(tmp_path / "m.gguf", "llama")
    msg = config_error(tmp_path, gguf_config(tmp_path, tmp_path, "m.gguf", task="seq2seq"))
    assert "decoder-only 'llama'" in msg


def test_gguf_file_needs_a_folder_or_repo(tmp_path):
    cfg = gguf_config(tmp_path, tmp_path, "m.gguf")
    cfg["model"] = {"from_config": {"model_type": "llama"}, "gguf_file": "m.gguf"}
    assert "model.gguf_file needs model.name_or_path" in config_error(tmp_path, cfg)


def test_package_without_subdir_is_its_folder(tmp_path, monkeypatch):
    from tasks.io import resolve_model

    pkg = tmp_path / "site" / "shipped_model_pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise ImportError('never imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert resolve_model("package:shipped_model_pkg") == str(pkg)
    assert "shipped_model_pkg" not in sys.modules


def test_inference_on_a_run_drops_the_configs_gguf_file(tmp_path):
    """`eval CONFIG model.name_or_path=RUN`: the run is an ordinary model folder, not the GGUF base."""
    from suites.config import inference
    from tests.conftest import write_yaml

    write_gguf(tmp_path / "m.gguf", "llama")
    run = tmp_path / "trained"
    run.mkdir()
    path = write_yaml(tmp_path / "c.yaml", gguf_config(tmp_path, tmp_path, "m.gguf"))
    cfg = inference.load(path, [f"model.name_or_path={run}"])
    assert cfg.model.name_or_path == str(run) and cfg.model.gguf_file is None


def test_model_type_of_a_gguf_steers_the_packing_default(tmp_path, monkeypatch):
    """A falcon GGUF (its attention ignores position-id restarts) is not packed by default; a llama one is."""
    from suites import config
    from tests.conftest import write_yaml

    monkeypatch.setenv("TRAINSUITE_MODEL_CACHE", str(tmp_path / "models"))
    for arch, packed in (("falcon", False), ("llama", True)):
        write_gguf(tmp_path / f"{arch}.gguf", arch)
        cfg = config.load(write_yaml(tmp_path / "c.yaml", gguf_config(tmp_path, tmp_path, f"{arch}.gguf")))
        assert cfg.sft.packing is packed, arch
