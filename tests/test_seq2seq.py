"""Seq2seq family: data forms and their errors, the collator, the loss, generation-based evaluation,
prediction order, and (when the data is there) a Multi30k run checked against sacreBLEU."""

from __future__ import annotations

import json
import logging
import os
import random
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from collators.seq2seq import Seq2SeqCollator
from suites import config
from suites.run import cli
from suites.errors import MISTAKES
from suites.seq2seq import Seq2SeqLoss, decode_labels

MULTI30K = Path(os.environ.get("MULTI30K_DIR", Path(__file__).resolve().parents[2] / "shared/data/multi30k"))
TINY_T5 = {"model_type": "t5", "d_model": 32, "d_ff": 64, "num_layers": 2, "num_decoder_layers": 2,
           "num_heads": 2, "d_kv": 16}
TINY_BART = {"model_type": "bart", "d_model": 32, "encoder_layers": 1, "decoder_layers": 1,
             "encoder_attention_heads": 2, "decoder_attention_heads": 2, "encoder_ffn_dim": 64,
             "decoder_ffn_dim": 64, "max_position_embeddings": 64}
WORDS = "a the man woman dog cat runs jumps red blue big small house car street park".split()


def toy_pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """A word-for-word 'language': each English word reversed and upper-cased."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(2, 7))]
        out.append((" ".join(words), " ".join(w.upper()[::-1] for w in words)))
    return out


def write_lines(path: Path, lines) -> str:
    path.write_text("".join(f"{x}\n" for x in lines), encoding="utf-8")
    return str(path)


def write_yaml(path: Path, body: dict) -> str:
    import yaml

    path.write_text(yaml.safe_dump(body), encoding="utf-8")
    return str(path)


def parallel_files(tmp: Path, pairs, name: str) -> dict:
    return {"source": write_lines(tmp / f"{name}.en", [s for s, _ in pairs]),
            "target": write_lines(tmp / f"{name}.de", [t for _, t in pairs])}


def base_config(tmp: Path, train_spec, eval_spec, model=None, **extra) -> dict:
    cfg = {"task": "seq2seq", "output_dir": str(tmp / "run"),
           "model": {"from_config": model or TINY_T5},
           "tokenizer": {"train_from_data": True, "vocab_size": 300},
           "data": {"train": train_spec, "eval": eval_spec, "max_source_length": 32, "max_target_length": 32},
           "generation": {"max_new_tokens": 16},
           "train": {"num_train_epochs": 2, "per_device_train_batch_size": 16, "learning_rate": 3e-3,
                     "logging_steps": 50, "save_strategy": "no"}}
    for k, v in extra.items():
        cfg.setdefault(k, {}).update(v) if isinstance(v, dict) else cfg.__setitem__(k, v)
    return cfg


def read_jsonl(path) -> list[dict]:
    return [json.loads(x) for x in Path(path).read_text(encoding="utf-8").splitlines() if x.strip()]


# ------------------------------------------------------------------ end to end (tiny T5, text files)


@pytest.fixture(scope="module")
def t5_run(tmp_path_factory):
    """A tiny T5 trained from scratch by the CLI on aligned text files, picking the best eval BLEU."""
    tmp = tmp_path_factory.mktemp("t5")
    pairs = toy_pairs(240)
    cfg = base_config(tmp, parallel_files(tmp, pairs[:200], "train"), parallel_files(tmp, pairs[200:], "val"),
                      loss={"label_smoothing": 0.1},
                      train={"save_strategy": "epoch", "metric_for_best_model": "bleu",
                             "load_best_model_at_end": True, "save_total_limit": 1})
    path = write_yaml(tmp / "run.yaml", cfg)
    assert cli.run(["train", path, "--quiet"]) == 0
    return tmp, path, pairs


def test_train_writes_results_and_predictions(t5_run):
    import sacrebleu

    tmp, _, pairs = t5_run
    run = tmp / "run"
    results = json.loads((run / "results.json").read_text())
    for key in ("eval_bleu", "eval_chrf", "eval_ter", "eval_rouge1", "eval_rouge2", "eval_rougeL",
                "eval_rougeLsum", "eval_exact_match", "eval_gen_len", "eval_loss"):
        assert key in results, key
    files = sorted(os.listdir(run / "predictions"))
    assert files == ["eval_step13.jsonl", "eval_step26.jsonl"]  # per epoch
    state = json.loads((run / "trainer_state.json").read_text())
    # the final eval judges the best checkpoint (load_best_model_at_end) and rewrites that step's file
    best_step = int(state["best_model_checkpoint"].rsplit("-", 1)[1])
    final = read_jsonl(run / "predictions" / f"eval_step{best_step}.jsonl")
    assert [r["source"] for r in final] == [s for s, _ in pairs[200:]]
    assert [r["reference"] for r in final] == [t for _, t in pairs[200:]]
    hyps = [r["hypothesis"] for r in final]
    assert results["eval_bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [[r["reference"] for r in final]]).score)
    # metric_for_best_model: bleu picked the epoch with the best eval BLEU
    bleus = [h["eval_bleu"] for h in state["log_history"] if "eval_bleu" in h]
    assert state["best_metric"] == pytest.approx(max(bleus[:2]))


def test_predict_keeps_row_order(t5_run, monkeypatch):
    """Generation runs longest-first; the output must still follow the input rows. An echoing
    `generate` makes each correct prediction equal to its own source."""
    from transformers import T5ForConditionalGeneration

    def echo(self, input_ids=None, attention_mask=None, **kwargs):
        start = torch.zeros((input_ids.size(0), 1), dtype=input_ids.dtype)
        return torch.cat([start, input_ids], 1)

    monkeypatch.setattr(T5ForConditionalGeneration, "generate", echo)
    tmp, path, _ = t5_run
    sources = ["a", "the big red dog runs in the park", "cat", "a small blue car", "man woman dog cat house",
               "street", "the the the the the the the the the", "red car"]
    inp = write_lines(tmp / "in.jsonl", [json.dumps({"source": s}) for s in sources])
    out = tmp / "out.jsonl"
    assert cli.run(["predict", path, "generation.batch_size=3", "--input", inp, "--output", str(out), "--quiet"]) == 0
    assert [r["prediction"] for r in read_jsonl(out)] == sources


def test_predict_real_generation_and_eval_command(t5_run):
    tmp, path, pairs = t5_run
    rows = [{"source": s} for s, _ in pairs[:5]]
    inp = write_lines(tmp / "in2.jsonl", [json.dumps(r) for r in rows])
    out = tmp / "out2.jsonl"
    assert cli.run(["predict", path, "--input", inp, "--output", str(out), "--quiet"]) == 0
    preds = read_jsonl(out)
    assert len(preds) == 5 and all(set(p) == {"prediction", "generated_tokens", "stop"} for p in preds)
    limit = 16  # generation.max_new_tokens of the run; issue 25, 7(d): why each row ended
    assert all(p["stop"] == "eos" or (p["stop"] == "length" and p["generated_tokens"] == limit) for p in preds)
    results = json.loads((tmp / "run" / "results.json").read_text())
    assert "test_bleu" not in results and results["num_predictions"] == 5
    # rows with targets are scored too: results.json gets test_bleu, equal to sacreBLEU on the output
    import sacrebleu

    scored = write_lines(tmp / "in3.jsonl", [json.dumps({"source": s, "target": t}) for s, t in pairs[:5]])
    assert cli.run(["predict", path, "--input", scored, "--output", str(out), "--quiet"]) == 0
    hyps = [p["prediction"] for p in read_jsonl(out)]
    results = json.loads((tmp / "run" / "results.json").read_text())
    assert results["test_bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [[t for _, t in pairs[:5]]]).score)
    assert cli.run(["predict", path, "--input", inp, "--output", str(out), "--quiet"]) == 0
    assert "test_bleu" not in json.loads((tmp / "run" / "results.json").read_text())  # not another file's score
    assert cli.run(["eval", path, "--quiet"]) == 0
    assert (tmp / "run" / "predictions" / "eval_step0.jsonl").is_file()


def test_predict_reads_a_plain_text_file_line_by_line(t5_run):
    """`predict --input test.en` (the form MT test sets come in): output row n answers line n,
    empty lines included; a lone \r ends a line as in Python's text files."""
    tmp, path, pairs = t5_run
    sources = [s for s, _ in pairs[:3]]
    (tmp / "test.en").write_bytes(f"{sources[0]}\n\r{sources[1]}\r\n{sources[2]}".encode())
    out = tmp / "out_txt.jsonl"
    assert cli.run(["predict", path, "--input", str(tmp / "test.en"), "--output", str(out), "--quiet"]) == 0
    preds = read_jsonl(out)
    assert len(preds) == 4
    jsonl = tmp / "same.jsonl"
    write_lines(jsonl, [json.dumps({"source": s}) for s in (sources[0], "", sources[1], sources[2])])
    assert cli.run(["predict", path, "--input", str(jsonl), "--output", str(tmp / "o2.jsonl"), "--quiet"]) == 0
    assert read_jsonl(tmp / "o2.jsonl") == preds


def test_label_padding_never_reaches_decode(t5_run, monkeypatch):
    """transformers#22634: decoding -100 fails or yields garbage. The evaluation decodes only
    generated ids; a tokenizer that refuses negative ids proves it."""
    from suites.run import runner

    tmp, path, _ = t5_run
    cfg = config.load(path)
    _, _, tokenizer, trainer, _ = runner.build(cfg, "eval")
    real = tokenizer.batch_decode

    def strict(seqs, **kw):
        assert all(t >= 0 for s in seqs for t in (s.tolist() if hasattr(s, "tolist") else s)), "-100 decoded"
        return real(seqs, **kw)

    monkeypatch.setattr(tokenizer, "batch_decode", strict)
    metrics = trainer.evaluate()
    assert "eval_bleu" in metrics
    # and the references from padded labels, when raw texts are absent, decode cleanly
    batch = Seq2SeqCollator(tokenizer)([{"input_ids": [5], "labels": tokenizer("a b c d e")["input_ids"]},
                                        {"input_ids": [5], "labels": tokenizer("a")["input_ids"]}])
    assert (batch["labels"] == -100).any()
    assert decode_labels(tokenizer, batch["labels"]) == ["a b c d e", "a"]


def test_fine_tune_from_a_checkpoint_dir(t5_run):
    """model.name_or_path: the checkpoint's own tokenizer, and the gentler pretrained defaults."""
    tmp, path, _ = t5_run
    out = tmp / "finetuned"
    overrides = [f"output_dir={out}", f"model.name_or_path={tmp / 'run'}", "model.from_config=null",
                 "tokenizer.train_from_data=false", "train.num_train_epochs=1", "train.load_best_model_at_end=false"]
    assert cli.run(["train", path, *overrides, "--quiet"]) == 0
    args = torch.load(out / "training_args.bin", weights_only=False)
    assert args.learning_rate == 3e-3  # the config's own rate wins over the family default
    from suites.seq2seq import Seq2SeqFamily

    cfg = config.load(path, overrides[1:4])
    assert Seq2SeqFamily(cfg).defaults["learning_rate"] == 5e-5
    assert "eval_bleu" in json.loads((out / "results.json").read_text())


def test_early_stopping_on_bleu(t5_run):
    """metric_for_best_model: bleu drives the early_stopping block through the generation-based evaluate."""
    from suites.run import runner

    tmp, path, _ = t5_run
    cfg = config.load(path, [f"output_dir={tmp / 'early'}", "train.num_train_epochs=6",
                             "early_stopping.patience=1", "early_stopping.threshold=1e6"])
    _, _, _, trainer, _ = runner.build(cfg, "train")
    trainer.train()
    evals = [h for h in trainer.state.log_history if "eval_bleu" in h]
    assert len(evals) == 2 and trainer.state.epoch == pytest.approx(2.0)  # stopped after no big gain
    assert trainer.state.best_metric == pytest.approx(max(e["eval_bleu"] for e in evals))


def test_eval_of_a_from_scratch_run_keeps_its_label_smoothing(t5_run):
    """The 0.1 default of a from-scratch run still applies when eval swaps from_config for the
    trained dir: else `trainsuite eval` reports another eval_loss for the same model."""
    from suites.run import runner
    from suites.seq2seq import Seq2SeqFamily

    tmp, path, _ = t5_run
    cfg = config.load(path, ["loss.label_smoothing=null"])
    runner._inference_model(cfg)
    assert cfg.model.from_config is None
    assert Seq2SeqFamily(cfg).trainer_kwargs(None, SimpleNamespace(generation_metrics=None))[
        "compute_loss_func"].smoothing == 0.1


# ------------------------------------------------------------------ data forms and bad input


def test_misaligned_parallel_files_exit_2(tmp_path, capsys):
    pairs = toy_pairs(10)
    train = parallel_files(tmp_path, pairs, "train")
    write_lines(Path(train["target"]), [t for _, t in pairs[:9]])
    path = write_yaml(tmp_path / "c.yaml", base_config(tmp_path, train, None))
    assert cli.run(["train", path]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "misaligned" in err and "train.de has 9 lines" in err


def test_empty_lines_are_counted_and_skipped(tmp_path, caplog):
    from tasks.seq2seq import Seq2SeqTask

    src = ["a dog", "", "the cat", "a car", "red"]
    tgt = ["GOD A", "TAC EHT", "", "RAC A", "DER"]
    train = {"source": write_lines(tmp_path / "t.en", src), "target": write_lines(tmp_path / "t.de", tgt)}
    cfg = config.from_dict(base_config(tmp_path, train, None))
    with caplog.at_level(logging.WARNING, logger="trainsuite"):
        ds = Seq2SeqTask(cfg).load("train")["train"]
    assert ds["source"] == ["a dog", "a car", "red"] and ds["target"] == ["GOD A", "RAC A", "DER"]
    assert ds["_line"] == [1, 4, 5]
    assert "skipped 2 of 5 pairs" in caplog.text and "lines 2, 3" in caplog.text


def test_translation_dicts_and_missing_language(tmp_path):
    from tasks.seq2seq import Seq2SeqTask

    rows = [{"translation": {"en": s, "de": t}} for s, t in toy_pairs(6)]
    good = write_lines(tmp_path / "tr.jsonl", [json.dumps(r) for r in rows])
    raw = base_config(tmp_path, good, None, data={"source_lang": "en", "target_lang": "de"})
    cfg = config.from_dict(raw)
    ds = Seq2SeqTask(cfg).load("train")["train"]
    assert ds["source"] == [r["translation"]["en"] for r in rows]
    assert ds["target"] == [r["translation"]["de"] for r in rows]

    rows[3] = {"translation": {"en": "a dog", "fr": "un chien"}}
    bad = write_lines(tmp_path / "bad.jsonl", [json.dumps(r) for r in rows])
    cfg = config.from_dict(dict(raw, data=dict(raw["data"], train=bad)))
    with pytest.raises(MISTAKES, match=r"bad.jsonl: line 4: 'translation' has no language 'de'"):
        Seq2SeqTask(cfg).load("train")

    with pytest.raises(MISTAKES, match="set data.source_lang and data.target_lang"):
        config.from_dict(base_config(tmp_path, good, None))

    # predict input: translation dicts without the target, or plain `source` rows
    cfg = config.from_dict(raw)
    inp = write_lines(tmp_path / "p.jsonl", [json.dumps({"translation": {"en": "a dog"}}),
                                             json.dumps({"translation": {"en": ""}})])
    assert Seq2SeqTask(cfg).load("predict", inp)["predict"]["source"] == ["a dog", ""]
    inp = write_lines(tmp_path / "p2.jsonl", [json.dumps({"source": "a cat"})])
    assert Seq2SeqTask(cfg).load("predict", inp)["predict"]["source"] == ["a cat"]


def test_missing_column_and_prefix_and_truncation(tmp_path, caplog):
    from tasks.seq2seq import Seq2SeqTask
    from tasks.tokenizer import T5_LIKE, train_tokenizer

    rows = [{"src": s, "tgt": t} for s, t in toy_pairs(8)]
    f = write_lines(tmp_path / "d.jsonl", [json.dumps(r) for r in rows])
    with pytest.raises(MISTAKES, match="no column 'source'"):
        config.from_dict(base_config(tmp_path, f, None))
    raw = base_config(tmp_path, f, None, data={"source_column": "src", "target_column": "tgt",
                                               "source_prefix": "translate: ", "max_target_length": 3})
    cfg = config.from_dict(raw)
    task = Seq2SeqTask(cfg)
    ds = task.load("train")["train"]
    tok = train_tokenizer(task.texts_for_tokenizer(ds), 300, T5_LIKE)
    with caplog.at_level(logging.WARNING, logger="trainsuite"):
        enc = task.encode(ds, tok, "train")
    assert tok.decode(enc["input_ids"][0], skip_special_tokens=True).startswith("translate: ")
    assert max(len(x) for x in enc["labels"]) == 3 and all(x[-1] == tok.eos_token_id for x in enc["labels"])
    assert "truncated 0 of 8 sources" in caplog.text and "of 8 targets to data.max_target_length=3" in caplog.text


def test_fp16_with_t5_is_refused(tmp_path):
    train = parallel_files(tmp_path, toy_pairs(4), "t")
    with pytest.raises(MISTAKES, match="bf16"):
        config.from_dict(base_config(tmp_path, train, None, train={"fp16": True}))


# ------------------------------------------------------------------ collator and loss


def test_collator_pads_sources_with_pad_and_labels_with_ignore_index():
    class Tok:
        pad_token_id = 0

    batch = Seq2SeqCollator(Tok())([{"input_ids": [5, 6, 1], "attention_mask": [1, 1, 1], "labels": [7, 1],
                                     "source_text": "x"},
                                    {"input_ids": [5, 1], "attention_mask": [1, 1], "labels": [7, 8, 9, 1]}])
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert batch["input_ids"].tolist() == [[5, 6, 1], [5, 1, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels"].tolist() == [[7, 1, -100, -100], [7, 8, 9, 1]]
    assert Seq2SeqCollator(Tok(), pad_to_multiple_of=8)([{"input_ids": [1], "labels": [1]}])["labels"].shape == (1, 8)
    # encoded rows carry no attention_mask: it is built from each row's length, so a pad id that is
    # part of a source (a tokenizer whose pad is also a real token) stays attended
    lean = Seq2SeqCollator(Tok())([{"input_ids": [5, 0, 1], "labels": [7]}, {"input_ids": [5], "labels": [7]}])
    assert lean["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_loss_ignores_label_padding(smoothing):
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 11)
    labels = torch.tensor([[3, 4, 2, -100, -100], [1, 2, 3, 4, 5]])
    loss = Seq2SeqLoss(smoothing)({"logits": logits}, labels)
    keep = labels != -100
    ref = torch.nn.functional.cross_entropy(logits[keep], labels[keep], label_smoothing=smoothing)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)
    # the logits at padded positions do not matter
    noisy = logits.clone()
    noisy[~keep] = 1e4 * torch.randn_like(noisy[~keep])
    assert Seq2SeqLoss(smoothing)({"logits": noisy}, labels).item() == pytest.approx(loss.item(), rel=1e-5)
    # divided by the tokens of the whole accumulation window when given
    assert Seq2SeqLoss(smoothing)({"logits": logits}, labels, num_items_in_batch=16).item() == pytest.approx(
        loss.item() * 8 / 16, rel=1e-5)


# ------------------------------------------------------------------ other architectures


def test_bart_from_scratch_on_translation_dicts(tmp_path):
    """BART-like special tokens; the decoder starts with </s> of the trained tokenizer."""
    pairs = toy_pairs(60, seed=1)
    rows = [json.dumps({"translation": {"en": s, "de": t}}) for s, t in pairs]
    train = write_lines(tmp_path / "train.jsonl", rows[:50])
    val = write_lines(tmp_path / "val.jsonl", rows[50:])
    cfg = base_config(tmp_path, train, val, model=TINY_BART, data={"source_lang": "en", "target_lang": "de"},
                      train={"num_train_epochs": 1}, generation={"num_beams": 2, "max_new_tokens": 8})
    path = write_yaml(tmp_path / "c.yaml", cfg)
    assert cli.run(["train", path, "--quiet"]) == 0
    model_cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    tok = json.loads((tmp_path / "run" / "tokenizer_config.json").read_text())
    assert tok.get("eos_token") == "</s>" and tok.get("bos_token") == "<s>"
    assert model_cfg["decoder_start_token_id"] == model_cfg["eos_token_id"] == model_cfg["forced_eos_token_id"]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert "eval_bleu" in results and len(read_jsonl(tmp_path / "run" / "predictions" / "eval_step4.jsonl")) == 10


# ------------------------------------------------------------------ real data


@pytest.mark.skipif(not (MULTI30K / "train.en").is_file(), reason=f"Multi30k not found in {MULTI30K}")
def test_multi30k_bleu_matches_sacrebleu_on_the_predictions_file(tmp_path):
    import sacrebleu

    def head(name: str, n: int) -> str:
        lines = (MULTI30K / name).read_text(encoding="utf-8").split("\n")[:n]
        return write_lines(tmp_path / name, lines)

    train = {"source": head("train.en", 2000), "target": head("train.de", 2000)}
    val = {"source": head("val.en", 64), "target": head("val.de", 64)}
    cfg = base_config(tmp_path, train, val, data={"max_source_length": 48, "max_target_length": 48},
                      tokenizer={"vocab_size": 1000}, loss={"label_smoothing": 0.1},
                      generation={"max_new_tokens": 40, "batch_size": 32},
                      train={"num_train_epochs": 3, "per_device_train_batch_size": 32})
    path = write_yaml(tmp_path / "c.yaml", cfg)
    assert cli.run(["train", path, "--quiet"]) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    state = json.loads((tmp_path / "run" / "trainer_state.json").read_text())
    rows = read_jsonl(tmp_path / "run" / "predictions" / f"eval_step{state['global_step']}.jsonl")
    assert len(rows) == 64 and any(r["hypothesis"] for r in rows)
    assert [r["reference"] for r in rows] == (MULTI30K / "val.de").read_text(encoding="utf-8").split("\n")[:64]
    hyps, refs = [r["hypothesis"] for r in rows], [[r["reference"] for r in rows]]
    assert results["eval_bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, refs).score, abs=1e-9)
    assert results["eval_chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, refs).score, abs=1e-9)
