"""Issue 16, items 6-8: absurd or impossible train values are refused in one line before any model loads;
YAML's `no` for a strategy; `train.seed`; every TrainingArguments field accepted or refused as documented."""

from __future__ import annotations

import dataclasses
import os

import pytest

from suites import config
from suites.run import cli
from suites.errors import UserError
from tests.conftest import config_error, write_yaml


def error_of(tmp_path, cfg, overrides=()) -> str:
    return config_error(tmp_path, cfg, overrides, UserError)


@pytest.mark.parametrize("override, expected", [
    ("train.learning_rate=-1", "train.learning_rate must be 0 or more, got -1"),
    ("train.per_device_train_batch_size=0", "train.per_device_train_batch_size must be at least 1, got 0"),
    ("train.gradient_accumulation_steps=0", "train.gradient_accumulation_steps must be at least 1, got 0"),
    ("train.per_device_eval_batch_size=0", "train.per_device_eval_batch_size must be at least 1, got 0"),
    ("seed=-1", "seed must be between 0 and 4294967295, got -1"),
    ("train.label_names=[a]", "train.label_names ['a'] is refused"),
    ("train.num_train_epochs=-1", "train.num_train_epochs must be above 0 (or set train.max_steps), got -1"),
    ("train.num_train_epochs=0", "train.num_train_epochs must be above 0"),
    ("data.max_length=0", "data.max_length must be at least 1, got 0"),
    ("train.max_steps=0", "train.max_steps must be positive (or -1: train num_train_epochs), got 0"),
    ("train.logging_steps=0", "train.logging_steps must be above 0, got 0"),
    ("data.max_length=1000", "data.max_length 1000 is beyond the model's 128 positions"),
])
def test_absurd_train_values_are_refused_up_front(tmp_path, cls_config, override, expected):
    assert expected in error_of(tmp_path, cls_config, [override])


def test_absurd_value_exits_2_before_the_tokenizer_is_trained(tmp_path, cls_config, capsys):
    code = cli.run(["train", write_yaml(tmp_path / "c.yaml", cls_config), "train.per_device_train_batch_size=0"])
    err = capsys.readouterr().err
    assert code == 2 and "per_device_train_batch_size must be at least 1" in err and "Traceback" not in err
    assert not os.path.exists(cls_config["output_dir"])


def test_epochs_zero_is_fine_with_max_steps(tmp_path, cls_config):
    cfg = config.load(write_yaml(tmp_path / "c.yaml", cls_config), ["train.num_train_epochs=0", "train.max_steps=3"])
    assert cfg.train["max_steps"] == 3


def test_sft_max_length_beyond_the_position_table(tmp_path):
    from tests.sft_common import sft_config

    cfg = sft_config(tmp_path)
    positions = cfg["model"]["from_config"]["max_position_embeddings"]
    msg = error_of(tmp_path, cfg, ["sft.max_length=100000"])
    assert f"sft.max_length 100000 is beyond the model's {positions} positions" in msg
    config.load(write_yaml(tmp_path / "c.yaml", cfg), [f"sft.max_length={positions}"])


def test_push_to_hub_offline_or_without_token(tmp_path, cls_config, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert "HF_HUB_OFFLINE is set" in error_of(tmp_path, cls_config, ["train.push_to_hub=true"])
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", "")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # no stored token either
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf" / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "hf" / "stored_tokens"))
    monkeypatch.delenv("HF_TOKEN")
    assert "needs a hub token" in error_of(tmp_path, cls_config, ["train.push_to_hub=true"])
    # online with a token, the run may push
    cfg = config.load(write_yaml(tmp_path / "c.yaml", cls_config), ["train.push_to_hub=true", "train.hub_token=x"])
    assert cfg.train["push_to_hub"] is True


@pytest.mark.parametrize("key", ["eval_strategy", "save_strategy", "logging_strategy"])
def test_yaml_no_is_the_strategy_no(tmp_path, cls_config, key):
    cfg = config.load(write_yaml(tmp_path / "c.yaml", cls_config), [f"train.{key}=no"])
    assert cfg.train[key] == "no"
    import yaml

    text = yaml.safe_dump(dict(cls_config, train={k: v for k, v in cls_config["train"].items() if k != key}))
    path = tmp_path / "f.yaml"
    path.write_text(text.replace("train:\n", f"train:\n  {key}: no\n", 1))  # unquoted, as users write it
    assert config.load(str(path)).train[key] == "no"


def test_train_seed_is_the_top_level_seed_unless_they_differ(tmp_path, cls_config):
    assert config.load(write_yaml(tmp_path / "c.yaml", cls_config), ["train.seed=7"]).seed == 7
    assert config.load(write_yaml(tmp_path / "c.yaml", cls_config), ["seed=7", "train.seed=7"]).seed == 7
    assert "contradicts the top-level seed (8)" in error_of(tmp_path, cls_config, ["seed=8", "train.seed=7"])
    out = cls_config["output_dir"]
    assert config.load(write_yaml(tmp_path / "c.yaml", cls_config), [f"train.output_dir={out}"]).output_dir == out
    assert "contradicts the top-level output_dir" in error_of(tmp_path, cls_config, ["train.output_dir=elsewhere"])


def _field_value(f):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def test_every_training_argument_is_accepted_or_refused_as_documented(tmp_path, cls_config):
    """Each field of the installed TrainingArguments, at its default value, is taken under `train:` or
    refused naming it, and then docs/config.md lists it with a reason."""
    from transformers import TrainingArguments

    docs = open(os.path.join(os.path.dirname(__file__), "..", "docs", "config.md"), encoding="utf-8").read()
    refused_table = docs.split("## `train` keys refused", 1)[-1]
    fields = [f for f in dataclasses.fields(TrainingArguments) if f.init]
    assert len(fields) > 50
    refused = []
    for f in fields:
        raw = dict(cls_config, train=dict(cls_config["train"], **{f.name: _field_value(f)}))
        if f.name == "save_strategy":
            raw["train"]["save_strategy"] = "no"
        try:
            cfg = config.from_dict(raw, str(tmp_path))
        except UserError as err:
            assert f.name in str(err), (f.name, str(err))
            assert f"| `{f.name}` |" in refused_table, f"train.{f.name} is refused but not in docs/config.md: {err}"
            refused.append(f.name)
            continue
        if f.name not in ("seed", "output_dir"):
            assert f.name in cfg.train
    assert "label_smoothing_factor" in refused


def test_lora_over_a_from_scratch_model_is_refused(tmp_path):
    # first hour, SFT: the starter's peft block kept with model.from_config trained and saved an adapter
    # whose base (random weights) was never saved; eval/predict then failed on "names no base model"
    from tests.sft_common import sft_config

    msg = error_of(tmp_path, sft_config(tmp_path, peft={"r": 4}))
    assert "peft (LoRA) with model.from_config" in msg
