"""The SFT family's chunked LM head on a CPU (suites/lm_head.py): the same log-probabilities, top-1 hits,
entropy and gradients as trl's fused head, in chunks, and the trainer uses it only where it applies."""

from __future__ import annotations

import pytest
import torch

from suites import lm_head
from tests.sft_common import TINY_LLAMA


def tiny_lora_model(seed=0):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    torch.manual_seed(seed)
    fields = {k: v for k, v in TINY_LLAMA.items() if k != "model_type"}
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model("llama", **fields, vocab_size=97))
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    return get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM",
                                            init_lora_weights=False))  # random B: the adapters change the logits


def batch():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 97, (3, 11), generator=g)
    labels = ids.clone()
    labels[:, :4] = -100  # a prompt
    labels[2, 8:] = -100  # and padding
    mask = torch.ones_like(ids)
    mask[2, 8:] = 0
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def lora_grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("chunk_logits", [97, 5 * 97, 2 ** 22])  # one token a chunk, five, all at once
def test_chunked_head_equals_trls_fused_head(monkeypatch, chunk_logits):
    monkeypatch.setattr(lm_head, "CHUNK_LOGITS", chunk_logits)
    model, inputs = tiny_lora_model(), batch()
    theirs = model(**inputs, fused_lm_head=True, use_cache=False)
    (-theirs.log_probs.sum()).backward()
    expected = lora_grads(model)
    model.zero_grad()
    ours = lm_head.token_outputs(model, inputs)
    (-ours.log_probs.sum()).backward()
    assert torch.equal(ours.label_mask, theirs.label_mask)
    torch.testing.assert_close(ours.log_probs, theirs.log_probs, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours.entropy, theirs.entropy.masked_fill(~theirs.label_mask, 0), rtol=1e-4, atol=1e-4)
    assert torch.equal(ours.is_top1, theirs.is_top1 & theirs.label_mask)
    for name, grad in lora_grads(model).items():
        torch.testing.assert_close(grad, expected[name], rtol=1e-4, atol=1e-6)


def test_head_with_scaled_logits_is_left_to_trl():
    model = tiny_lora_model()
    assert lm_head.plain_head(model)
    model.get_base_model().config.final_logit_softcapping = 30.0
    assert not lm_head.plain_head(model)


def test_cpu_run_trains_through_the_chunked_head_with_trls_loss(tmp_path, monkeypatch):
    """A CPU run takes the chunked head, and its training loss is the one trl's fused head gives."""
    from suites import config
    from suites.run import runner
    from tests.conftest import write_yaml
    from tests.sft_common import sft_config

    raw = sft_config(tmp_path, sft={"max_length": 64, "packing": False})
    cfg = config.load(write_yaml(tmp_path / "cfg.yaml", raw))
    _, _, _, trainer, _ = runner.build(cfg, "train")
    assert trainer._chunked_head
    inputs = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    ours = trainer.compute_loss(trainer.model, dict(inputs))
    trainer._use_chunked_head = False
    theirs = trainer.compute_loss(trainer.model, dict(inputs))
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    assert trainer._metrics["train"]["mean_token_accuracy"][0] == pytest.approx(
        trainer._metrics["train"]["mean_token_accuracy"][1])
