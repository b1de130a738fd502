"""Issue 16, item 9: SFT predict of plain {"prompt": ...} rows for a model trained on conversations renders
each prompt with the training chat template; a completion that stops inside a character shows no U+FFFD."""

from __future__ import annotations

import json
import logging
import os

from suites import config
from suites.run import cli
from tasks.tokenizer import CHAT_LIKE, train_tokenizer
from tests.conftest import write_jsonl, write_yaml
from tests.sft_common import sft_config


def _predict(path, tmp_path, rows):
    inp = write_jsonl(tmp_path / "prompts.jsonl", rows)
    out = str(tmp_path / "preds.jsonl")
    assert cli.run(["predict", path, "--input", inp, "--output", out, "--quiet"]) == 0
    with open(out, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def test_plain_prompts_get_the_chat_template_of_a_messages_model(tmp_path, caplog):
    raw = sft_config(tmp_path)
    path = write_yaml(tmp_path / "cfg.yaml", raw)
    with caplog.at_level(logging.INFO, logger="trainsuite"):
        assert cli.run(["train", path]) == 0
    # first hour: the schedule line said "4 training rows" of 32 examples; packing is now said
    assert "sft.packing: 32 training examples packed into" in caplog.text
    run_dir = raw["output_dir"]
    assert json.load(open(os.path.join(run_dir, "sft_format.json")))["chat_template"] is True
    rows = _predict(path, tmp_path, [{"prompt": "repeat: red cat"}])
    assert rows[0]["prompt"] == "<|im_start|>user\nrepeat: red cat<|im_end|>\n<|im_start|>assistant\n"
    os.remove(os.path.join(run_dir, "sft_format.json"))  # a run saved before the file: the training data tells
    assert _predict(path, tmp_path, [{"prompt": "repeat: sun"}])[0]["prompt"].startswith("<|im_start|>user\n")


def test_prompt_completion_training_data_is_no_chat(tmp_path):
    from tasks.instruction import detect_format
    from tasks.trained_chat import trained_on_chat

    rows = [{"prompt": "repeat: red", "completion": " red"}] * 8
    cfg = config.load(write_yaml(tmp_path / "c.yaml", sft_config(tmp_path, train_rows=rows, eval_rows=rows)))
    assert trained_on_chat(cfg, detect_format) is False


def test_a_completion_cut_inside_a_character_has_no_replacement_character():
    from suites.sft import decode_completion

    tok = train_tokenizer(["café 日本 😀 straße"] * 20, 280, CHAT_LIKE)
    ids = tok("café 日本 😀", add_special_tokens=False)["input_ids"]
    assert decode_completion(tok, ids) == "café 日本 😀"
    for k in range(len(ids)):  # generation stopped after k tokens, maybe inside a character
        text = decode_completion(tok, ids[:k])
        assert "\ufffd" not in text and "café 日本 😀".startswith(text), (k, text)
