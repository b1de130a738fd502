"""Issue 25, item 7 (a), (b), (d): SFT predict of a .txt file of prompts, scoring of rows that carry a
reference, predict's own results on stdout, and generation that says how far it got and why each row ended."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from suites import generation
from suites.run import cli
from tests.conftest import write_jsonl, write_yaml
from tests.sft_common import TINY_LLAMA, chat_rows, sft_config

STOPS = ("eos", "length")


def _read(path):
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def _predict(capsys, path, inp, out):
    capsys.readouterr()
    assert cli.run(["predict", path, "--input", str(inp), "--output", str(out), "--quiet"]) == 0
    return json.loads(capsys.readouterr().out), _read(out)


def test_txt_prompts_and_scored_predictions(tmp_path, capsys):
    raw = sft_config(tmp_path, data={"format": "messages"})  # a format set for training: prompts still read
    path = write_yaml(tmp_path / "cfg.yaml", raw)
    assert cli.run(["train", path, "--quiet"]) == 0
    run_dir, out = raw["output_dir"], tmp_path / "preds.jsonl"
    limit = raw["generation"]["max_new_tokens"]

    # (a) one user prompt a line, rendered with the run's chat template; an empty line is a row too
    txt = tmp_path / "prompts.txt"
    txt.write_text("repeat: red cat\n\nrepeat: sun\n", encoding="utf-8")
    results, rows = _predict(capsys, path, txt, out)
    assert [r["prompt"] for r in rows] == [f"<|im_start|>user\n{p}<|im_end|>\n<|im_start|>assistant\n"
                                           for p in ("repeat: red cat", "", "repeat: sun")]
    # (d) each row says how many tokens it generated and why it ended
    assert all(r["stop"] in STOPS and (r["stop"] == "length") == (r["generated_tokens"] == limit) for r in rows)
    assert not any(k.startswith("test_") for k in results) and results["num_predictions"] == 3
    assert "train_loss" not in results  # (b) predict's own results, not the training run's merged in

    # (b) conversations ending in the assistant's reply are scored against it, as the eval generations are
    import sacrebleu

    conv = chat_rows(5, seed=7)
    results, rows = _predict(capsys, path, write_jsonl(tmp_path / "conv.jsonl", conv), out)
    refs = [c["messages"][-1]["content"] for c in conv]
    assert [r["reference"] for r in rows] == refs
    assert results["test_bleu"] == pytest.approx(sacrebleu.corpus_bleu([r["completion"] for r in rows], [refs]).score)
    assert {"test_chrf", "test_exact_match", "test_gen_len", "test_rougeL"} <= set(results)
    assert results["test_scored_rows"] == 5 and "train_loss" not in results and "eval_loss" not in results
    on_disk = json.load(open(f"{run_dir}/results.json"))  # the file keeps the training results beside them
    assert on_disk["test_bleu"] == results["test_bleu"] and "train_loss" in on_disk

    # a `reference` field (here on plain prompts) and a prompt/completion row's completion are references too
    plain = [{"prompt": "repeat: red", "reference": "red"}, {"prompt": "repeat: sun moon", "completion": "sun moon"},
             {"prompt": "repeat: dog"}]
    results, rows = _predict(capsys, path, write_jsonl(tmp_path / "plain.jsonl", plain), out)
    assert [r.get("reference") for r in rows] == ["red", "sun moon", None]
    assert rows[1]["prompt"] == "<|im_start|>user\nrepeat: sun moon<|im_end|>\n<|im_start|>assistant\n"
    assert results["test_scored_rows"] == 2 and "test_bleu" in results
    _predict(capsys, path, txt, out)  # a later unscored predict leaves no earlier scores in results.json
    assert not any(k.startswith("test_") for k in json.load(open(f"{run_dir}/results.json")))

    # plain text rows hold no prompt: one line naming --input, not data.train's sft.loss_on
    text_rows = write_jsonl(tmp_path / "text.jsonl", [{"text": "red cat"}])
    assert cli.run(["predict", path, "sft.loss_on=assistant", "--input", text_rows, "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: --input: predict needs prompts") and ".txt file" in err


def _tiny_generator():
    """A tiny Llama whose LM head is zero: every logit ties, so greedy generation always picks token id 0."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from tasks.instruction import CHATML_TEMPLATE
    from tasks.tokenizer import CHAT_LIKE, train_tokenizer

    tok = train_tokenizer(["repeat: red cat sun moon"] * 5, 280, CHAT_LIKE)
    tok.chat_template = CHATML_TEMPLATE
    fields = {k: v for k, v in TINY_LLAMA.items() if k != "model_type"}
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id,
                                         eos_token_id=tok.eos_token_id, **fields))
    with torch.no_grad():
        model.lm_head.weight.zero_()
    return model, tok


def test_generation_rows_carry_token_count_and_stop_reason():
    from types import SimpleNamespace

    from suites.sft import generate

    model, tok = _tiny_generator()
    gen = SimpleNamespace(num_beams=1, max_new_tokens=5, no_repeat_ngram_size=0, do_sample=False, batch_size=None)
    assert tok.convert_ids_to_tokens(0) not in (tok.eos_token, "<|im_end|>")
    assert [o[1:] for o in generate(model, tok, ["repeat: red", "repeat: cat sun"], gen, 2)] == [(5, "length")] * 2
    tok.eos_token = tok.convert_ids_to_tokens(0)  # now the token it always picks ends the reply at once
    assert [o[1:] for o in generate(model, tok, ["repeat: red"], gen, 2)] == [(0, "eos")]


def test_generation_logs_progress_without_a_bar(monkeypatch, caplog):
    """No terminal (no tqdm bar): log lines say how far generation got, so a long one never looks hung."""
    monkeypatch.setattr(generation, "PROGRESS_LOG_SECONDS", 0.0)

    def run_batch(idx, keep):
        return [("x", 3, "eos") for _ in idx], ()

    with caplog.at_level(logging.INFO, logger="trainsuite"):
        outs, _ = generation.generate_in_order([4, 2, 7, 1, 5], run_batch, 2, quiet=True)
    assert outs == [("x", 3, "eos")] * 5
    lines = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("generating: 2/5 rows, 6 tokens") for m in lines)
    assert any(m.startswith("generating: 4/5 rows, 12 tokens") for m in lines)
    assert any(m.startswith("generating: 5 rows done, 15 tokens in") for m in lines)
    caplog.clear()
    monkeypatch.setattr(generation, "PROGRESS_LOG_SECONDS", 3600.0)
    with caplog.at_level(logging.INFO, logger="trainsuite"):
        generation.generate_in_order([4, 2], run_batch, 2, quiet=True)
    assert [r.getMessage()[:24] for r in caplog.records] == ["generating: 2 rows done,"]
