"""The preference family on 2 CPU processes (gloo) through scripts/launch: FSDP2 and DeepSpeed ZeRO-3 with LoRA
give the losses and the evaluation of one process (the evaluation's uneven batches included: 4 eval pairs, one
rank gets none)."""

from __future__ import annotations

import json

import pytest
import torch

from suites.run.cli import run
from tests.conftest import write_yaml
from tests.preference_common import pair_rows, pref_config
from tests.sft_common import TINY_LLAMA
from tests.test_distributed_engines import launch


def _base(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    from tasks.instruction import CHATML_TEMPLATE
    from tasks.tokenizer import CHAT_LIKE, train_tokenizer

    base = tmp_path / "base"
    tok = train_tokenizer(["repeat: red green blue cat dog bird sun moon tree river stone fire"] * 5, 300, CHAT_LIKE)
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.chat_template = CHATML_TEMPLATE
    torch.manual_seed(0)
    fields = {k: v for k, v in TINY_LLAMA.items() if k != "model_type"}
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), **fields)).save_pretrained(base)
    tok.save_pretrained(base)
    return base


def _summary(run_dir):
    with open(run_dir / "trainer_state.json") as fh:
        losses = [e["loss"] for e in json.load(fh)["log_history"] if "loss" in e]
    with open(run_dir / "results.json") as fh:
        return losses, json.load(fh)


@pytest.mark.slow
@pytest.mark.parametrize("engine,precompute,lora", [
    (["--fsdp"], False, True), (["--deepspeed", "zero3"], False, True), (["--deepspeed", "zero3"], True, True),
    (["--fsdp"], False, False), (["--deepspeed", "zero3"], False, False)],
    ids=["fsdp2", "zero3", "zero3-precompute_ref", "fsdp2-full-reference_copy", "zero3-full-reference_copy"])
def test_sharded_dpo_equals_one_process(tmp_path, engine, precompute, lora):
    if engine[0] == "--deepspeed":
        pytest.importorskip("deepspeed")
    peft = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]} if lora else None
    cfg = pref_config(tmp_path, pair_rows(16, 0), pair_rows(4, 1), peft=peft)
    # precomputed: the reference forwards run on the sharded model before training, every rank all pairs
    cfg["preference"] = dict(cfg.get("preference") or {}, precompute_ref=precompute)
    cfg["model"], cfg["tokenizer"] = {"name_or_path": str(_base(tmp_path))}, {}
    cfg["train"].update(max_steps=4, per_device_train_batch_size=2, gradient_accumulation_steps=2,
                        eval_strategy="no", learning_rate=0.05)
    one = dict(cfg, output_dir=str(tmp_path / "one"))
    assert run(["train", write_yaml(tmp_path / "one.yaml", one), "--quiet"]) == 0
    two = dict(cfg, output_dir=str(tmp_path / "two"), train=dict(cfg["train"], per_device_train_batch_size=1))
    launch(*engine, "--nproc", "2", write_yaml(tmp_path / "two.yaml", two), cwd=tmp_path)
    (a, ra), (b, rb) = _summary(tmp_path / "one"), _summary(tmp_path / "two")
    assert rb["world_size"] == 2 and len(a) == len(b) == 4
    assert b == pytest.approx(a, rel=1e-4, abs=1e-5)
    for key in ("eval_loss", "eval_reward_margin", "eval_logps_chosen"):
        assert rb[key] == pytest.approx(ra[key], rel=1e-4, abs=1e-5), key
