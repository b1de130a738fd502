"""SFT from the command line: train -> results.json, eval equal with and without packing,
generation-based eval and predict files, bad input -> exit 2 with one line naming file and line."""

from __future__ import annotations

import json
import os

import pytest

from suites import config
from suites.run.cli import run
from suites.errors import UserError
from tests.conftest import write_jsonl, write_yaml
from tests.sft_common import TINY_LLAMA, chat_rows, sft_config


def _results(out, name="results.json"):
    with open(os.path.join(out, name)) as fh:
        return json.load(fh)


def test_train_eval_predict_end_to_end(tmp_path, capsys):
    raw = sft_config(tmp_path, sft={"eval_generations": 4, "packing": True})
    path = write_yaml(tmp_path / "cfg.yaml", raw)
    out = raw["output_dir"]
    assert run(["train", path, "--quiet"]) == 0
    res = _results(out)
    for key in ("eval_loss", "train_loss", "eval_perplexity", "eval_mean_token_accuracy", "eval_bleu",
                "eval_rougeL", "eval_exact_match", "eval_num_tokens"):
        assert key in res, key
    with open(os.path.join(out, "eval_generations.jsonl")) as fh:
        gens = [json.loads(line) for line in fh]
    assert len(gens) == 4 and {"prompt", "prediction", "reference", "generated_tokens", "stop"} <= set(gens[0])
    assert gens[0]["prompt"].endswith("<|im_start|>assistant\n")

    losses = {}
    for packing in ("true", "false"):
        assert run(["eval", path, f"sft.packing={packing}", "sft.eval_generations=0", "--quiet"]) == 0
        losses[packing] = _results(out, "eval_results.json")["eval_loss"]
    assert abs(losses["true"] - losses["false"]) < 1e-5
    assert abs(losses["true"] - res["eval_loss"]) < 1e-5

    inp = write_jsonl(tmp_path / "prompts.jsonl", [{"messages": [{"role": "user", "content": "repeat: red cat"}]},
                                                   {"messages": [{"role": "user", "content": "repeat: sun"}]}])
    preds = str(tmp_path / "preds.jsonl")
    assert run(["predict", path, "--input", inp, "--output", preds, "--quiet"]) == 0
    with open(preds) as fh:
        rows = [json.loads(line) for line in fh]
    assert len(rows) == 2 and all(isinstance(r["completion"], str) for r in rows)


def test_generation_matches_unpadded_generation(tmp_path):
    """Batched left-padded generation gives each prompt the completion it gets alone."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from suites.config import GenerationConfig
    from suites.sft import generate
    from tasks.instruction import CHATML_TEMPLATE
    from tasks.tokenizer import CHAT_LIKE, train_tokenizer
    from tests.sft_common import TINY_LLAMA, WORDS

    tok = train_tokenizer([" ".join(WORDS)] * 3, 300, CHAT_LIKE)
    tok.chat_template = CHATML_TEMPLATE
    torch.manual_seed(0)
    fields = {k: v for k, v in TINY_LLAMA.items() if k != "model_type"}
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id, **fields))
    prompts = ["red", "blue green cat dog bird sun moon", "sun moon", "cat dog bird"]  # sorted inside, order kept
    gen = GenerationConfig(max_new_tokens=5)
    together = generate(model, tok, prompts, gen, batch_size=2)
    alone = [generate(model, tok, [p], gen, batch_size=1)[0] for p in prompts]
    assert together == alone and tok.padding_side == "right"
    assert any(n > 0 for _, n, _ in together)


def test_bad_row_exits_2_with_one_line_naming_file_and_line(tmp_path, capsys):
    rows = chat_rows(3) + [{"messages": [{"role": "assistant", "content": "hi"}]}]
    raw = sft_config(tmp_path, rows)
    assert run(["train", write_yaml(tmp_path / "cfg.yaml", raw)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train.jsonl: line 4: roles out of order" in err[0]


def test_flex_attention_without_a_gpu_exits_2_with_one_line(tmp_path, capsys, monkeypatch):
    import torch

    raw = sft_config(tmp_path, model={"from_config": dict(TINY_LLAMA), "attn_implementation": "flex_attention"})
    assert run(["train", write_yaml(tmp_path / "cfg.yaml", raw)]) == 2  # sft_config trains with use_cpu
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.attn_implementation=flex_attention needs a CUDA GPU" in err[0]
    assert "use sdpa" in err[0] and not os.path.exists(raw["output_dir"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    raw["train"]["use_cpu"] = False
    with pytest.raises(UserError, match="needs a CUDA GPU"):  # no GPU at all
        config.from_dict(raw)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    config.from_dict(raw)  # on a GPU, flex attention is accepted
    raw["model"]["attn_implementation"] = "sdpa"
    raw["train"]["use_cpu"] = True
    config.from_dict(raw)  # and sdpa everywhere


def test_malformed_jsonl_exits_2(tmp_path, capsys):
    raw = sft_config(tmp_path)
    with open(raw["data"]["train"], "a") as fh:
        fh.write("{not json\n")
    assert run(["train", write_yaml(tmp_path / "cfg.yaml", raw)]) == 2
    assert "train.jsonl: line 33: malformed JSON" in capsys.readouterr().err


def test_eval_generations_on_text_rows_warns(tmp_path, caplog):
    import logging

    from suites import config

    from suites.run import runner

    text = [{"text": f"red cat number {i} sat on the mat"} for i in range(8)]
    raw = sft_config(tmp_path, text, text[:4], sft={"eval_generations": 2})
    cfg = config.load(write_yaml(tmp_path / "t.yaml", raw))
    with caplog.at_level(logging.WARNING, logger="trainsuite"):
        runner.build(cfg, "train")
    assert any("no prompt and reference" in r.getMessage() for r in caplog.records)


def test_metric_for_best_model_checked_at_config_time(tmp_path):
    """An SFT metric the evaluation never reports fails at load, not after an epoch (KeyError);
    perplexity selects the lowest."""
    import pytest

    from suites import config
    from suites.errors import MISTAKES

    def load(train, sft=None):
        raw = sft_config(tmp_path, **({"sft": sft} if sft else {}))
        raw["train"].update(train)
        return config.from_dict(raw)

    with pytest.raises(MISTAKES, match="perplexity"):
        load({"metric_for_best_model": "perplexty"})
    with pytest.raises(MISTAKES, match="need sft.eval_generations"):
        load({"metric_for_best_model": "bleu"})
    assert load({"metric_for_best_model": "bleu"}, {"eval_generations": 2}).train.get("greater_is_better") is None
    assert load({"metric_for_best_model": "eval_perplexity"}).train["greater_is_better"] is False
    assert load({"metric_for_best_model": "perplexity", "greater_is_better": True}).train["greater_is_better"] is True
