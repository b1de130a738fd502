"""Property-based tests (hypothesis): whatever a user types into a config or a data file, the
suite either reads it or raises UserError with one line naming where; never another exception."""

from __future__ import annotations

import csv
import io as stdio
import json
import os
import tempfile

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suites import config
from suites.errors import MISTAKES
from tasks import io

# derandomized: CI runs the same examples every time; set HYPOTHESIS_EXPLORE=1 to search afresh
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck),
                    derandomize=not os.environ.get("HYPOTHESIS_EXPLORE"), database=None)

KEYS = ["task", "output_dir", "seed", "nonfinite", "model", "name_or_path", "from_config", "model_type",
        "tokenizer", "train_from_data", "vocab_size", "algorithm", "data", "train", "eval", "labels",
        "eval_fraction", "max_train_samples", "text_column", "label_column", "problem_type", "loss",
        "class_weights", "peft", "r", "quantization", "bits", "generation", "num_beams", "sft", "packing",
        "learning_rate", "fp16", "bf16", "num_train_epochs", "hub", "source", "target"]
VALUES = ["classification", "seq2seq", "sft", "bert", "t5", "llama", "stop", "skip", "auto", "bpe",
          "x.jsonl", "missing.csv", "/", ".", "~", "./nope", "single_label_classification"]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.sampled_from(VALUES), st.text(max_size=12))
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=8), st.integers(-3, 3))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(keys, inner, max_size=4)),
                      max_leaves=12)
top = st.fixed_dictionaries({}, optional={"task": st.one_of(st.sampled_from(["classification", "seq2seq", "sft"]),
                                                              scalars)}).flatmap(
    lambda base: st.dictionaries(keys, values, max_size=6).map(lambda d: {**d, **base}))


def _path_text():
    return st.lists(st.sampled_from(KEYS + ["x", "0"]), min_size=1, max_size=3).map(".".join)


overrides = st.lists(st.one_of(
    st.tuples(_path_text(), st.one_of(st.text(max_size=10), st.sampled_from(
        ["[", "{a: 1}", "3e-5", "._", "1_.5", "2001-13-45", "!!python/name:os.system", "*a", "&a [*a]",
         "null", "[1, 2]", "yes", "'", ".nan"]))).map("=".join),
    st.text(max_size=12)), max_size=3)


def _check_user_error(exc: Exception, *names: str) -> None:
    msg = str(exc)
    assert msg and "\n" not in msg, repr(msg)
    for name in names:
        assert name in msg, (name, msg)


@SETTINGS
@given(raw=top, extra=overrides)
def test_config_loader_reads_or_refuses_in_one_line(raw, extra):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "c.yaml")
        with open(path, "w", encoding="utf-8") as fh:
            yaml.safe_dump(raw, fh, allow_unicode=True)
        try:
            cfg = config.load(path, extra)
        except MISTAKES as exc:
            _check_user_error(exc)
        else:
            assert cfg.task in config.TASKS


TINY = {"task": "classification", "output_dir": "run", "nonfinite": "stop",
        "model": {"from_config": {"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 1,
                                  "num_attention_heads": 2, "intermediate_size": 64}},
        "tokenizer": {"train_from_data": True, "vocab_size": 100, "algorithm": "wordpiece"},
        "data": {"train": "train.jsonl", "eval": "train.jsonl", "max_length": 16, "labels": ["neg", "pos"]},
        "loss": {"class_weights": "auto"}, "generation": {"num_beams": 1},
        "train": {"learning_rate": 1e-3, "num_train_epochs": 1, "use_cpu": True, "logging_steps": 2}}
PATHS = sorted({".".join(p) for p in [("task",), ("output_dir",), ("seed",), ("nonfinite",), ("model",),
                                      ("model", "name_or_path"), ("model", "from_config"),
                                      ("model", "from_config", "model_type"), ("model", "from_config", "hidden_size"),
                                      ("tokenizer",), ("tokenizer", "vocab_size"), ("tokenizer", "algorithm"),
                                      ("data",), ("data", "train"), ("data", "eval"), ("data", "labels"),
                                      ("data", "eval_fraction"), ("data", "text_column"), ("data", "problem_type"),
                                      ("data", "max_train_samples"), ("loss", "class_weights"), ("peft",),
                                      ("peft", "r"), ("quantization",), ("quantization", "bits"), ("sft",),
                                      ("sft", "packing"), ("generation", "num_beams"), ("train",),
                                      ("train", "learning_rate"), ("train", "fp16"), ("train", "bf16"),
                                      ("train", "eval_strategy"), ("train", "lr"), ("train", "5"), ("data", "x")]})
mutations = st.lists(st.tuples(st.sampled_from(PATHS), st.one_of(st.just("<delete>"), values)), min_size=1,
                     max_size=4)


def _mutate(cfg, path, value):
    keys = [int(k) if k.isdigit() else k for k in path.split(".")]
    node = cfg
    for k in keys[:-1]:
        if not isinstance(node.get(k), dict):
            node[k] = {}
        node = node[k]
    if value == "<delete>":
        node.pop(keys[-1], None)
    else:
        node[keys[-1]] = value


@SETTINGS
@given(changes=mutations)
def test_mutated_valid_config_reads_or_refuses_in_one_line(changes):
    import copy

    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "train.jsonl"), "w") as fh:
            fh.write('{"text": "good", "label": "pos"}\n{"text": "bad", "label": "neg"}\n')
        raw = copy.deepcopy(TINY)
        for path, value in changes:
            _mutate(raw, path, value)
        path = os.path.join(d, "c.yaml")
        with open(path, "w", encoding="utf-8") as fh:
            yaml.safe_dump(raw, fh, allow_unicode=True)
        try:
            config.load(path)
        except MISTAKES as exc:
            _check_user_error(exc)


@SETTINGS
@given(text=st.one_of(st.text(max_size=200), st.lists(st.sampled_from(
    ["task: classification", "model:", "  from_config: {model_type: bert}", "lr: ._", "x: 2001-13-45",
     "- a", "a: [", "  b: 1", "\tc: 2", "d: !!binary ===", "e: &x 1", "f: *y", "g: !!int abc", "h: '",
     "{", "? [a]", ": b", "%YAML 9.9", "---", "..."]), max_size=8).map("\n".join)),
       raw_bytes=st.binary(max_size=40))
def test_config_file_text_reads_or_refuses_in_one_line(text, raw_bytes):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "c.yaml")
        with open(path, "wb") as fh:
            fh.write(text.encode("utf-8", "surrogatepass") + raw_bytes)
        try:
            config.load(path)
        except MISTAKES as exc:
            _check_user_error(exc)


# ---------------------------------------------------------------- data readers

LINES = ['{"text": "a", "label": 1}', '{"text": "b", "label": "pos"}', '{"text": [1, {"x": null}]}', "[1, 2]",
         '"just a string"', "{", "", "  ", "text,label", "a,b", '"quoted, comma",x', '"unclosed', "a\tb",
         "\ufeff{}", '{"label": 1e999}', "NaN", '{"a": "\\ud800"}', "x" * 50, ",,,", '"a""b",c']


def _read(path):
    try:
        rows = io.read_records(path, "data.train")
    except MISTAKES as exc:
        _check_user_error(exc, path)
        return None
    assert rows and all(isinstance(r, dict) and isinstance(r[io.LINE], int) for r in rows)
    return rows


@SETTINGS
@given(ext=st.sampled_from([".jsonl", ".csv", ".tsv", ".json", ".txt"]),
       lines=st.lists(st.one_of(st.sampled_from(LINES), st.text(max_size=30)), max_size=8),
       newline=st.sampled_from(["\n", "\r\n", "\r"]), raw_bytes=st.binary(max_size=20))
def test_data_readers_read_or_refuse_naming_the_file(ext, lines, newline, raw_bytes):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "data" + ext)
        with open(path, "wb") as fh:
            fh.write(newline.join(lines).encode("utf-8", "surrogatepass") + raw_bytes)
        rows = _read(path)
        if rows is not None:  # what the reader accepted, datasets must take too (or refuse clearly)
            try:
                io.load_split(path, "data.train", "train")
            except MISTAKES as exc:
                _check_user_error(exc, path)


texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)


@SETTINGS
@given(rows=st.lists(st.fixed_dictionaries({"text": texts, "label": st.one_of(texts, st.integers())}),
                     min_size=1, max_size=6))
def test_jsonl_round_trip(rows):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "data.jsonl")
        with open(path, "w", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")
        got = io.read_records(path)
        assert [{k: v for k, v in r.items() if k != io.LINE} for r in got] == rows
        assert [r[io.LINE] for r in got] == list(range(1, len(rows) + 1))


@SETTINGS
@given(header=st.lists(st.text(st.characters(exclude_categories=("Cs", "Zs", "Cc")), min_size=1, max_size=8),
                       min_size=1, max_size=3, unique=True),
       body=st.lists(st.lists(texts.filter(lambda t: t.strip()), min_size=3, max_size=3), min_size=1, max_size=5),
       quote_all=st.booleans())
def test_csv_round_trip(header, body, quote_all):
    rows = [r[: len(header)] for r in body]
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "data.csv")
        buf = stdio.StringIO()
        writer = csv.writer(buf, quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL)
        writer.writerow(header)
        writer.writerows(rows)
        with open(path, "w", encoding="utf-8", newline="") as fh:
            fh.write(buf.getvalue())
        got = io.read_records(path)
        assert [[r[h] for h in header] for r in got] == rows
        assert io.peek_columns(path, "data.train") == set(header)


# ---------------------------------------------------------------- what the properties found


def _error(fn, *args) -> str:
    try:
        fn(*args)
    except MISTAKES as exc:
        _check_user_error(exc)
        return str(exc)
    raise AssertionError("no UserError")


def test_found_yaml_scalars_that_look_like_floats_or_dates(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("task: classification\nseed: 2001-13-45\n")
    assert "line 2" in _error(config.load, str(path)) and "2001-13-45" in _error(config.load, str(path))
    assert config.parse_override("train.lr=._") == (["train", "lr"], "._")  # read as text


def test_found_keys_with_newlines_or_numbers_stay_one_line(tmp_path):
    assert "unknown key 'a\\nb'" in _error(config.from_dict, {"task": "sft", "a\nb": 1})
    path = tmp_path / "c.yaml"
    yaml.safe_dump({**TINY, "train": {5: 1}}, open(path, "w"))
    assert "train.5" in _error(config.load, str(path))


def test_found_line_separators_inside_values(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"text": "a\u2028b\x85c\x0cd", "label": "x"}, ensure_ascii=False) + "\n",
                    encoding="utf-8")
    assert io.read_records(str(path))[0]["text"] == "a\u2028b\x85c\x0cd"
    csv_path = tmp_path / "d.csv"
    csv_path.write_text('"text","label"\n"two\nlines",x\n', encoding="utf-8")
    assert io.peek_columns(str(csv_path), "data.train") == {"text", "label"}  # quoted header names
    assert io.read_records(str(csv_path))[0]["text"] == "two\nlines"


def test_found_mixed_types_and_surrogates_name_the_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": 1}\n\n{"text": "b", "label": "pos"}\n')
    assert _error(io.load_split, str(path), "data.train", "train") == (
        f"{path}: line 3: field 'label' is text here but a number on line 1; use one type per field")
    path.write_text('{"text": "a"}\n{"text": "\\ud800"}\n')
    assert f"{path}: line 2: field 'text' holds a lone surrogate" in _error(
        io.load_split, str(path), "data.train", "train")
    dup = tmp_path / "d.csv"
    dup.write_text("text,label,text\na,b,c\n")
    assert "line 1: column 'text' appears twice" in _error(io.read_records, str(dup))
