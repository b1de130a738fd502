"""The preference family, stage 2: every loss trains, reference log-probs precomputed and cached, training
from an SFT run (merged or LoRA adapter) with its chat template and end-of-turn token."""

from __future__ import annotations

import json
import logging
import os

import pytest
import torch

from collators.preference import PreferenceCollator
from suites.run.cli import run
from tests.conftest import write_yaml
from tests.preference_common import build, pair_rows, pref_config, saved_tokenizer
from tests.sft_common import TINY_LLAMA, chat_rows, sft_config


def one_step(cfg, **train):
    cfg["train"].update(max_steps=2, optim="sgd", learning_rate=0.5, lr_scheduler_type="constant", warmup_steps=0,
                        eval_strategy="no", **train)
    return cfg


@pytest.mark.parametrize("loss", ["ipo", "robust", "orpo", "simpo"])
def test_every_loss_trains(tmp_path, loss, monkeypatch):
    import copy as copy_module

    copies = []
    deepcopy = copy_module.deepcopy
    monkeypatch.setattr(copy_module, "deepcopy", lambda x, *a: (copies.append(type(x).__name__), deepcopy(x, *a))[1])
    extra = {"label_smoothing": 0.1} if loss == "robust" else {}
    trainer = build(tmp_path, one_step(pref_config(tmp_path, preference={"loss": loss, **extra})))[3]
    out = trainer.train()
    assert torch.isfinite(torch.tensor(out.training_loss))
    no_reference = loss in ("orpo", "simpo")
    assert (trainer.ref_model is None) == no_reference
    assert ("LlamaForCausalLM" in copies) != no_reference  # a reference copy only where the loss has one


def test_precomputed_reference_gives_the_same_training_and_is_cached(tmp_path, caplog):
    """Full fine-tuning: the reference copy beside the policy, or log-probs computed once before training."""
    live = build(tmp_path, one_step(pref_config(tmp_path)))[3]
    live.train()
    pre = build(tmp_path, one_step(pref_config(tmp_path, preference={"precompute_ref": True})), name="p.yaml")[3]
    assert pre.ref_model is None and "ref_chosen_logps" in pre.train_dataset.column_names
    pre.train()
    for (name, a), b in zip(live.model.state_dict().items(), pre.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    cached = os.listdir(tmp_path / "prepared-cache" / "reference-logps")
    assert len(cached) == 2  # train and eval
    with caplog.at_level(logging.INFO, logger="trainsuite"):
        again = build(tmp_path, one_step(pref_config(tmp_path, preference={"precompute_ref": True})), name="q.yaml")[3]
    assert caplog.text.count("reference log-probs read from the cache") == 2
    assert again.train_dataset["ref_chosen_logps"] == pre.train_dataset["ref_chosen_logps"]


def _sft_run(tmp_path, lora: bool):
    """A trained tiny SFT run: a whole model (from scratch), or a LoRA adapter on a saved tiny base."""
    cfg = sft_config(tmp_path, chat_rows(16, 0), chat_rows(4, 1), sft={"max_length": 64, "packing": False})
    cfg["train"].update(max_steps=2)
    if lora:
        base = _saved_base(tmp_path)
        cfg["model"], cfg["tokenizer"] = {"name_or_path": str(base)}, {}
        cfg["peft"] = {"r": 4, "alpha": 8, "dropout": 0.0}
    cfg["output_dir"] = str(tmp_path / ("sft-lora" if lora else "sft"))
    assert run(["train", write_yaml(tmp_path / "sft.yaml", cfg)]) == 0
    return tmp_path / ("sft-lora" if lora else "sft")


def _saved_base(tmp_path):
    """A tiny Llama with random weights and a ChatML tokenizer saved as a pretrained folder."""
    from transformers import LlamaConfig, LlamaForCausalLM

    base = tmp_path / "base"
    if not base.exists():
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(saved_tokenizer(tmp_path))
        fields = {k: v for k, v in TINY_LLAMA.items() if k != "model_type"}
        LlamaForCausalLM(LlamaConfig(**fields, vocab_size=len(tokenizer))).save_pretrained(base)
        tokenizer.save_pretrained(base)
    return base


def test_training_from_a_merged_sft_run_keeps_its_template_and_end_of_turn(tmp_path):
    sft = _sft_run(tmp_path, lora=False)
    cfg = one_step(pref_config(tmp_path))
    cfg["model"], cfg["tokenizer"] = {"name_or_path": str(sft)}, {}
    _, _, tokenizer, trainer, data = build(tmp_path, cfg)
    with open(sft / "chat_template.jinja") as fh:
        assert tokenizer.chat_template == fh.read()
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert all(r["chosen_ids"][-1] == r["rejected_ids"][-1] == end for r in data["train"])
    assert trainer.ref_model is not None
    trainer.train()


def test_training_from_an_sft_adapter_continues_it_against_the_sft_model(tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    sft = _sft_run(tmp_path, lora=True)
    cfg = one_step(pref_config(tmp_path, peft={"r": 8}))
    cfg["model"], cfg["tokenizer"] = {"name_or_path": str(sft)}, {}
    cfg["output_dir"] = str(tmp_path / "pref")
    _, _, tokenizer, trainer, data = build(tmp_path, cfg)
    model = trainer.model
    assert isinstance(model, PeftModel) and sorted(model.peft_config) == ["default", "ref"]
    assert model.peft_config["default"].r == 4  # the SFT adapter's own
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".default." in n for n in trainable)
    batch = PreferenceCollator(tokenizer.pad_token_id)([data["train"][i] for i in range(2)])
    from suites.pairs.logps import pair_logps, reference_logps

    sft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(_saved_base(tmp_path)), sft).eval()
    with torch.no_grad():
        want = pair_logps(sft_model, batch, chunked=True)[0]
    trainer.train()  # the policy moves; the reference stays the SFT model
    ref_c, _ = reference_logps(trainer, batch)
    torch.testing.assert_close(ref_c, want.chosen)
    trainer.save_model()
    out = tmp_path / "pref"
    assert not (out / "ref").exists()
    with open(out / "adapter_config.json") as fh:
        assert json.load(fh)["base_model_name_or_path"] == str(_saved_base(tmp_path))


def test_qlora_4bit_trains_on_cpu_and_its_adapter_evaluates(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    base = tmp_path / "base64"
    tokenizer = build(tmp_path, pref_config(tmp_path))[2]
    fields = {k: v for k, v in TINY_LLAMA.items() if k != "model_type"}
    fields["hidden_size"], fields["intermediate_size"] = 64, 128  # bitsandbytes needs a few blocks
    LlamaForCausalLM(LlamaConfig(**fields, vocab_size=len(tokenizer))).save_pretrained(base)
    tokenizer.save_pretrained(base)
    cfg = one_step(pref_config(tmp_path, peft={"r": 4, "alpha": 8, "dropout": 0.0}, quantization={"bits": 4}))
    cfg["model"], cfg["tokenizer"] = {"name_or_path": str(base)}, {}
    path = write_yaml(tmp_path / "q.yaml", cfg)
    assert run(["train", path, "--quiet"]) == 0
    with open(tmp_path / "run" / "results.json") as fh:
        results = json.load(fh)
    assert results["params_trainable"] < results["params_total"] / 3 and results["train_loss"] > 0
    assert run(["eval", path, f"model.name_or_path={tmp_path / 'run'}", "--quiet"]) == 0
    with open(tmp_path / "run" / "eval_results.json") as fh:
        assert "eval_reward_accuracy" in json.load(fh)


@pytest.mark.parametrize("peft", [None, {"r": 4, "alpha": 8, "dropout": 0.0}])
def test_eval_of_a_trained_run_measures_rewards_against_its_starting_model(tmp_path, peft):
    """`trainsuite eval` of a full fine-tune loads the model training started from (preference_reference.json)
    as the reference; of a LoRA run, disables the adapter: its scores are those of the run's final evaluation."""
    base = _saved_base(tmp_path)
    cfg = pref_config(tmp_path, **({"peft": peft} if peft else {}))
    cfg["model"], cfg["tokenizer"] = {"name_or_path": str(base)}, {}
    cfg["train"].update(max_steps=3, learning_rate=1e-2)
    path = write_yaml(tmp_path / "e.yaml", cfg)
    assert run(["train", path, "--quiet"]) == 0
    out = tmp_path / "run"
    assert run(["eval", path, f"model.name_or_path={out}", "--quiet"]) == 0
    with open(out / "results.json") as a, open(out / "eval_results.json") as b:
        trained, evaluated = json.load(a), json.load(b)
    assert abs(trained["eval_reward_margin"]) > 1e-3
    for key in ("eval_loss", "eval_reward_margin", "eval_rewards_chosen", "eval_logps_chosen"):
        assert evaluated[key] == pytest.approx(trained[key], rel=1e-4, abs=1e-5), key
