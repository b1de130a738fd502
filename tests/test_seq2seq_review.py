"""Seq2seq regressions found in review: each test failed before its fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from suites import config
from suites.run import cli
from suites.errors import MISTAKES
from test_seq2seq import base_config, parallel_files, read_jsonl, toy_pairs, write_lines, write_yaml


def test_unknown_metric_for_best_model_is_refused_before_training(tmp_path, capsys):
    """'rouge' is no seq2seq metric (rouge1/rouge2/rougeL/rougeLsum are): one line, exit 2, before
    any training, and no half-made output_dir (it used to be a KeyError traceback after epoch 1)."""
    train = parallel_files(tmp_path, toy_pairs(20), "t")
    cfg = base_config(tmp_path, train, train, train={"num_train_epochs": 1, "metric_for_best_model": "rouge",
                                                     "load_best_model_at_end": True})
    path = write_yaml(tmp_path / "c.yaml", cfg)
    assert cli.run(["train", path]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "metric_for_best_model" in err and "rougeL" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("metric", ["bleu", "eval_bleu", "rougeLsum", "loss", "eval_loss", "exact_match", "ter"])
def test_known_metrics_for_best_model_are_accepted(tmp_path, metric):
    from suites.seq2seq import Seq2SeqFamily

    train = parallel_files(tmp_path, toy_pairs(4), "t")
    cfg = config.from_dict(base_config(tmp_path, train, train, train={"metric_for_best_model": metric}))
    Seq2SeqFamily(cfg)


@pytest.mark.parametrize("metric, explicit, expected", [("ter", None, False), ("eval_ter", None, False),
                                                        ("ter", True, True), ("bleu", None, None)])
def test_ter_is_lower_is_better_by_default(tmp_path, metric, explicit, expected):
    """TER is an error rate: picking the checkpoint with the highest TER picks the worst one."""
    from suites.seq2seq import Seq2SeqFamily

    train = parallel_files(tmp_path, toy_pairs(4), "t")
    extra = {"metric_for_best_model": metric} | ({} if explicit is None else {"greater_is_better": explicit})
    cfg = config.from_dict(base_config(tmp_path, train, train, train=extra))
    merged = {**Seq2SeqFamily(cfg).defaults, **cfg.train}
    assert merged.get("greater_is_better") == expected


def test_final_eval_of_the_best_model_does_not_overwrite_the_last_steps_predictions(tmp_path, monkeypatch):
    """With load_best_model_at_end the evaluation after training judges the best checkpoint: its
    predictions go to that checkpoint's step file; the last step's file keeps the last model's.
    `generate` answers with a token that depends on the weights, so each model writes its own file."""
    import torch
    from transformers import T5ForConditionalGeneration

    from suites.seq2seq import Seq2SeqSuiteTrainer

    def weights_token(self, input_ids=None, attention_mask=None, **kwargs):
        token = 10 + int(abs(float(self.lm_head.weight.sum())) * 1e4) % 200
        return torch.tensor([[0, token, token + 1]] * input_ids.size(0))

    written = {}
    real_write = Seq2SeqSuiteTrainer.write_predictions

    def record(self, name, sources, references, hypotheses, *generation):
        written.setdefault(name, []).append(list(hypotheses))
        return real_write(self, name, sources, references, hypotheses, *generation)

    monkeypatch.setattr(T5ForConditionalGeneration, "generate", weights_token)
    monkeypatch.setattr(Seq2SeqSuiteTrainer, "write_predictions", record)
    pairs = toy_pairs(60, seed=3)
    cfg = base_config(tmp_path, parallel_files(tmp_path, pairs[:48], "train"),
                      parallel_files(tmp_path, pairs[48:], "val"),
                      train={"num_train_epochs": 3, "save_strategy": "epoch", "metric_for_best_model": "loss",
                             "greater_is_better": True,  # the highest eval loss: the first epoch
                             "load_best_model_at_end": True, "save_total_limit": 1})
    path = write_yaml(tmp_path / "c.yaml", cfg)
    assert cli.run(["train", path, "--quiet"]) == 0
    run = tmp_path / "run"
    state = json.loads((run / "trainer_state.json").read_text())
    best_step = int(state["best_model_checkpoint"].rsplit("-", 1)[1])
    last_step = state["global_step"]
    assert best_step < last_step
    first = {name: versions[0] for name, versions in written.items()}
    assert first[f"eval_step{best_step}.jsonl"] != first[f"eval_step{last_step}.jsonl"]  # two models
    for name, versions in written.items():  # a step's file only ever holds that step's model
        assert all(v == versions[0] for v in versions), name
        assert [r["hypothesis"] for r in read_jsonl(run / "predictions" / name)] == versions[0]


@pytest.mark.parametrize("row, field", [({"source": ["a dog", "runs"], "target": "GOD A"}, "'source' is a list"),
                                        ({"source": "a dog", "target": {"de": "x"}}, "'target' is a mapping"),
                                        ({"translation": {"en": ["a", "dog"], "de": "GOD A"}},
                                         "'translation.en' is a list")])
def test_list_or_mapping_fields_are_refused_not_stringified(tmp_path, row, field):
    """A list source (in every row) used to become its Python repr "['a dog', 'runs']" and be trained on."""
    from tasks.seq2seq import Seq2SeqTask

    f = write_lines(tmp_path / "d.jsonl", [json.dumps(row)] * 2)  # one type per field: past tasks/io.py
    langs = {"source_lang": "en", "target_lang": "de"} if "translation" in row else {}
    cfg = config.from_dict(base_config(tmp_path, f, None, data=langs))
    with pytest.raises(MISTAKES, match=rf"d.jsonl: line 1: {field}, not text"):
        Seq2SeqTask(cfg).load("train")


def test_numbers_are_read_as_text(tmp_path):
    from tasks.seq2seq import Seq2SeqTask

    f = write_lines(tmp_path / "n.jsonl", [json.dumps({"source": 12, "target": 21}),
                                           json.dumps({"source": 3, "target": 30})])
    ds = Seq2SeqTask(config.from_dict(base_config(tmp_path, f, None))).load("train")["train"]
    assert ds["source"] == ["12", "3"] and ds["target"] == ["21", "30"]


def test_predict_input_without_a_source_names_the_option_and_the_accepted_fields(tmp_path):
    from tasks.seq2seq import Seq2SeqTask

    train = parallel_files(tmp_path, toy_pairs(4), "t")
    cfg = config.from_dict(base_config(tmp_path, train, None))
    inp = write_lines(tmp_path / "in.jsonl", [json.dumps({"text": "a dog"})])
    with pytest.raises(MISTAKES, match=r"^--input: .*in.jsonl: no column 'source' \(found: text\); "
                                        r"prediction rows need .*'translation' dict"):
        Seq2SeqTask(cfg).load("predict", inp)


@pytest.mark.parametrize("model_type", ["bart", "marian"])
def test_lengths_beyond_the_position_table_are_refused(tmp_path, capsys, model_type):
    """A BART/Marian with max_position_embeddings 8 and 32-token sources used to stop with an
    IndexError traceback inside the embedding, leaving a half-made output_dir."""
    from test_seq2seq import TINY_BART

    train = parallel_files(tmp_path, toy_pairs(20), "t")
    model = dict(TINY_BART, model_type=model_type, max_position_embeddings=8)
    cfg = base_config(tmp_path, train, None, model=model, train={"max_steps": 1})
    path = write_yaml(tmp_path / "c.yaml", cfg)
    assert cli.run(["train", path]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "data.max_source_length 32 is beyond the model's 8 positions" in err
    assert not (tmp_path / "run").exists()
    # within the table it trains
    path = write_yaml(tmp_path / "ok.yaml", base_config(
        tmp_path, train, None, model=model, train={"max_steps": 1},
        data={"max_source_length": 8, "max_target_length": 8}, generation={"max_new_tokens": 8}))
    assert cli.run(["train", path, "--quiet"]) == 0
