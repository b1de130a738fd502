"""Classification with LoRA and with 4/8-bit quantized weights (bitsandbytes works on CPU)."""

from __future__ import annotations

import copy
import json

import pytest

from suites.run.cli import run
from tests.conftest import TINY_BERT, write_yaml


@pytest.fixture
def pretrained_dir(tmp_path, cls_config):
    """A tiny 'pretrained' BERT with its tokenizer saved to disk, like a hub checkpoint."""
    from transformers import AutoConfig, AutoModel

    from tasks.tokenizer import BERT_LIKE, train_tokenizer
    from tests.conftest import sentiment_rows

    tok = train_tokenizer((r["text"] for r in sentiment_rows(96)), 120, BERT_LIKE, "wordpiece")
    conf = AutoConfig.for_model(**dict(TINY_BERT, hidden_size=64, intermediate_size=128), vocab_size=len(tok))
    path = tmp_path / "pretrained"
    AutoModel.from_config(conf).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


@pytest.mark.parametrize("extra", [
    {"peft": {"r": 4, "alpha": 8, "target_modules": ["query", "value"]}},
    {"peft": {"r": 4, "use_dora": True, "target_modules": ["query", "value"]}},
    {"peft": {"r": 4}, "quantization": {"bits": 8}},
    {"peft": {"r": 4}, "quantization": {"bits": 4}},
], ids=["lora", "dora", "8bit", "4bit"])
def test_peft_and_quantized_runs(tmp_path, cls_config, pretrained_dir, extra):
    c = copy.deepcopy(cls_config)
    c.pop("tokenizer")
    c["model"] = {"name_or_path": pretrained_dir}
    c["train"] = {"max_steps": 3, "per_device_train_batch_size": 8, "learning_rate": 1e-3,
                  "save_strategy": "no", "use_cpu": True}
    c.update(copy.deepcopy(extra))
    cfg = write_yaml(tmp_path / "c.yaml", c)
    assert run(["train", cfg]) == 0
    res = json.load(open(tmp_path / "run" / "results.json"))
    assert 0 < res["params_trainable"] < res["params_total"]  # only adapters (and the head) train
    assert "eval_accuracy" in res
    # the saved run holds the adapter, not a full copy of the model
    assert (tmp_path / "run" / "adapter_config.json").exists()


def test_eval_of_a_lora_run_dir(tmp_path, cls_config, pretrained_dir):
    """Three labels: the base loads with the trained head's size before the adapter goes on."""
    from tests.conftest import sentiment_rows, write_jsonl

    rows = sentiment_rows(60, 3)
    for i, r in enumerate(rows):
        r["label"] = ["neg", "pos", "mixed"][i % 3]
    data = write_jsonl(tmp_path / "three.jsonl", rows)
    c = copy.deepcopy(cls_config)
    c["data"].update(train=data, eval=data)
    c.pop("tokenizer")
    c["model"] = {"name_or_path": pretrained_dir}
    c["peft"] = {"r": 4, "target_modules": ["query", "value"]}
    c["train"] = {"max_steps": 6, "per_device_train_batch_size": 8, "learning_rate": 5e-3,
                  "save_strategy": "no", "use_cpu": True}
    cfg = write_yaml(tmp_path / "c.yaml", c)
    assert run(["train", cfg]) == 0
    trained = json.load(open(tmp_path / "run" / "results.json"))
    assert run(["eval", cfg, f"model.name_or_path={tmp_path / 'run'}", "peft=null"]) == 0
    again = json.load(open(tmp_path / "run" / "eval_results.json"))
    assert again["eval_loss"] == pytest.approx(trained["eval_loss"], rel=1e-5)
    # with its training config as it is (peft: block kept) the trained adapter is used, not wrapped anew
    assert run(["eval", cfg, f"model.name_or_path={tmp_path / 'run'}"]) == 0
    again = json.load(open(tmp_path / "run" / "eval_results.json"))
    assert again["eval_loss"] == pytest.approx(trained["eval_loss"], rel=1e-5)
