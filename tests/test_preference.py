"""The preference family (suites/preference.py, tasks/preference.py): losses, pairs, masks, truncation,
gradient accumulation, LoRA reference, resume and a whole run, on a tiny Llama."""

from __future__ import annotations

import json
import math
import os
import shutil

import pytest
import torch

from collators.preference import PreferenceCollator
from suites.pairs.losses import PairLogps, pair_losses
from suites.run.cli import run
from tasks.errors import DataError
from tasks.preference import truncate_prompt
from tests.conftest import write_jsonl, write_yaml
from tests.preference_common import build, pair_rows, pref_config, saved_tokenizer


def sig(x):
    return 1 / (1 + math.exp(-x))


# -- losses by hand -------------------------------------------------------------------------------
def test_losses_on_a_hand_computable_pair():
    """One pair: policy chosen -1, rejected -3 (summed log-probs over 2 and 4 reply tokens), reference -2, -2."""
    p = PairLogps(torch.tensor([-1.0]), torch.tensor([-3.0]), torch.tensor([2]), torch.tensor([4]))
    ref = (torch.tensor([-2.0]), torch.tensor([-2.0]))
    # DPO: delta = (-1 + 2) - (-3 + 2) = 2; beta 0.5 -> -log sigmoid(1)
    loss, rc, rr = pair_losses("sigmoid", p, *ref, beta=0.5)
    assert loss.item() == pytest.approx(-math.log(sig(1.0)))
    assert (rc.item(), rr.item()) == pytest.approx((0.5, -0.5))
    # robust, e = 0.1: (0.9 * -log s(1) - 0.1 * -log s(-1)) / 0.8
    loss, _, _ = pair_losses("robust", p, *ref, beta=0.5, label_smoothing=0.1)
    assert loss.item() == pytest.approx((-0.9 * math.log(sig(1)) + 0.1 * math.log(sig(-1))) / 0.8)
    # IPO: per-token log-ratios 1/2 - (-1/4) = 0.75; (0.75 - 1/(2*0.5))^2 = 0.0625
    loss, _, _ = pair_losses("ipo", p, *ref, beta=0.5)
    assert loss.item() == pytest.approx(0.0625)
    # SimPO: averages -0.5 and -0.75; -log s(2 * 0.25 - 0.5) = log 2
    loss, rc, rr = pair_losses("simpo", p, beta=2.0, gamma=0.5)
    assert loss.item() == pytest.approx(math.log(2))
    assert (rc.item(), rr.item()) == pytest.approx((-1.0, -1.5))
    # ORPO: 0.5 (chosen NLL per token) - 0.1 * log s(log odds(e^-0.5) - log odds(e^-0.75))
    odds = lambda a: math.log(math.exp(a) / (1 - math.exp(a)))  # noqa: E731
    loss, _, _ = pair_losses("orpo", p, beta=0.1)
    assert loss.item() == pytest.approx(0.5 - 0.1 * math.log(sig(odds(-0.5) - odds(-0.75))), rel=1e-5)


def test_reference_free_losses_equal_trls_cpo_and_orpo_trainers():
    """SimPO against trl's CPOTrainer.cpo_loss (loss_type simpo), ORPO's odds-ratio term against
    ORPOTrainer.odds_ratio_loss, on mean log-probs from near 0 (long, likely replies) to far below."""
    from types import SimpleNamespace

    cpo = pytest.importorskip("trl.experimental.cpo.cpo_trainer")
    orpo = pytest.importorskip("trl.experimental.orpo.orpo_trainer")
    g = torch.Generator().manual_seed(0)
    tokens_c, tokens_r = torch.randint(1, 40, (64,), generator=g), torch.randint(1, 40, (64,), generator=g)
    avg_c = -torch.rand(64, generator=g) ** 2 * 12 - 1e-4
    avg_r = -torch.rand(64, generator=g) ** 2 * 12 - 1e-4
    p = PairLogps(avg_c * tokens_c, avg_r * tokens_r, tokens_c, tokens_r)
    accelerator = SimpleNamespace(device=torch.device("cpu"))
    for beta, gamma in ((2.0, 0.5), (0.1, 1.4)):
        theirs = SimpleNamespace(alpha=0.0, loss_type="simpo", simpo_gamma=gamma, beta=beta, label_smoothing=0.0,
                                 accelerator=accelerator)
        want, want_c, want_r = cpo.CPOTrainer.cpo_loss(theirs, avg_c, avg_r)
        got, got_c, got_r = pair_losses("simpo", p, beta=beta, gamma=gamma)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close((got_c, got_r), (want_c, want_r), rtol=1e-5, atol=1e-6)
        theirs = SimpleNamespace(beta=beta, accelerator=accelerator)
        odds_term, want_c, want_r, _, _ = orpo.ORPOTrainer.odds_ratio_loss(theirs, avg_c, avg_r)
        got, got_c, got_r = pair_losses("orpo", p, beta=beta)
        # ours: -mean chosen log-prob - the odds-ratio term, per pair (trl adds its NLL over the batch)
        torch.testing.assert_close(got + p.chosen / tokens_c, -odds_term, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close((got_c, got_r), (want_c, want_r), rtol=1e-5, atol=1e-6)


# -- pairs, masks, truncation ----------------------------------------------------------------------
def test_pairs_share_prompt_tokens_and_masks_cover_only_replies(tmp_path):
    _, task, tokenizer, trainer, data = build(tmp_path, pref_config(tmp_path))
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    rows = [data["train"][i] for i in range(3)]
    batch = PreferenceCollator(tokenizer.pad_token_id)(rows)
    n = len(rows)
    assert trainer.samples_in(batch) == n  # samples_per_s counts pairs, not their 2n rows
    for i, row in enumerate(rows):
        p = len(row["prompt_ids"])
        chosen, rejected = batch["input_ids"][i], batch["input_ids"][n + i]
        assert chosen[:p].tolist() == rejected[:p].tolist() == row["prompt_ids"]  # the same prompt tokens
        prompt_text = tokenizer.decode(row["prompt_ids"])
        assert prompt_text.endswith("<|im_start|>assistant\n") and "repeat:" in prompt_text
        for k, side in ((i, "chosen_ids"), (n + i, "rejected_ids")):
            trained = batch["labels"][k][batch["labels"][k] != -100].tolist()
            assert trained == row[side] and trained[-1] == im_end  # the reply alone, its end-of-turn included
            assert (batch["labels"][k][:p] == -100).all()
    assert batch["attention_mask"].sum().item() == sum(2 * len(r["prompt_ids"]) + len(r["chosen_ids"]) +
                                                       len(r["rejected_ids"]) for r in rows)


def test_truncation_cuts_the_prompt_from_the_left_first():
    prompt = list(range(10))
    assert truncate_prompt(prompt, 3, 20, 6) == (prompt[-6:], 1)  # max_prompt_length
    assert truncate_prompt(prompt, 12, 20, 8) == (prompt[-8:], 1)
    assert truncate_prompt(prompt, 16, 20, 8) == (prompt[-4:], 1)  # max_length: the reply stays whole
    assert truncate_prompt(prompt, 19, 20, 8) == (prompt[-1:], 1)
    assert truncate_prompt(prompt, 20, 20, 8) == (None, 0)  # no room: dropped
    assert truncate_prompt(prompt, 3, 20, 10) == (prompt, 0)


def test_long_pairs_lose_prompt_tokens_and_keep_replies(tmp_path):
    long = [{"prompt": "repeat: " + "red green blue " * 8, "chosen": "red", "rejected": "green"}] * 3
    rows = pair_rows(6, 0, chat=False) + long + [{"prompt": "p", "chosen": "moon " * 40, "rejected": "x"}]
    cfg = pref_config(tmp_path, rows, pair_rows(3, 1, chat=False),
                      preference={"max_length": 24, "max_prompt_length": 16})
    _, task, tokenizer, _, data = build(tmp_path, cfg)
    stats = task.stats["train"]
    assert stats["dropped_overlong"] == 1 and stats["truncated"] >= 3
    eos = tokenizer.eos_token_id
    for row in data["train"]:
        assert len(row["prompt_ids"]) <= 16 and row["chosen_ids"][-1] == row["rejected_ids"][-1] == eos
        assert len(row["prompt_ids"]) + max(len(row["chosen_ids"]), len(row["rejected_ids"])) <= 24
    whole = tokenizer(long[0]["prompt"], add_special_tokens=False)["input_ids"]
    cut = [r["prompt_ids"] for r in data["train"] if tokenizer.decode(r["chosen_ids"]).startswith("red")]
    assert cut and all(c == whole[-len(c):] for c in cut)  # the prompt's end is kept


@pytest.mark.parametrize("row, message", [
    ({"prompt": "hi", "chosen": "a"}, "line 1: column 'rejected' is missing or null"),
    ({"prompt": "hi", "chosen": "same", "rejected": "same"}, "line 1: 'chosen' and 'rejected' are identical"),
    ({"prompt": [{"role": "user", "content": "hi"}],
      "chosen": [{"role": "user", "content": "bye"}, {"role": "assistant", "content": "a"}],
      "rejected": [{"role": "assistant", "content": "b"}]}, "line 1: the prompt is not a prefix of 'chosen'"),
    ({"chosen": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "a"}],
      "rejected": [{"role": "user", "content": "ho"}, {"role": "assistant", "content": "b"}]},
     "line 1: 'chosen' and 'rejected' do not share a prompt"),
    ({"prompt": "hi", "chosen": "hi there", "rejected": "bye"}, "line 1: the prompt is not a prefix of 'rejected'"),
])
def test_bad_pairs_are_refused_with_file_and_line(tmp_path, row, message):
    chat = isinstance(row.get("chosen"), list)
    filler = pair_rows(2, 0, chat=chat)
    if chat and "prompt" not in row:  # a column missing on the first line only would be another error
        filler = [{"chosen": r["prompt"] + r["chosen"], "rejected": r["prompt"] + r["rejected"]} for r in filler]
    cfg = pref_config(tmp_path, [row] + filler)
    with pytest.raises(DataError) as info:
        build(tmp_path, cfg)
    assert message in str(info.value) and "train.jsonl" in str(info.value) and "\n" not in str(info.value)


def test_empty_replies_are_dropped_and_counted(tmp_path, caplog):
    rows = pair_rows(6, 0) + [{"prompt": [{"role": "user", "content": "hi"}],
                               "chosen": [{"role": "assistant", "content": " "}],
                               "rejected": [{"role": "assistant", "content": "b"}]}]
    _, task, _, _, data = build(tmp_path, pref_config(tmp_path, rows))
    assert task.stats["train"]["dropped_empty_reply"] == 1 and len(data["train"]) == 6
    assert "train.jsonl:7" in caplog.text


def test_implicit_prompt_and_sharegpt_pairs_match_explicit_ones(tmp_path):
    explicit = pair_rows(4, 0)
    implicit = [{"chosen": r["prompt"] + r["chosen"], "rejected": r["prompt"] + r["rejected"]} for r in explicit]
    sharegpt = [{"conversations": [{"from": "human", "value": r["prompt"][0]["content"]}],
                 "chosen": {"from": "gpt", "value": r["chosen"][0]["content"]},
                 "rejected": {"from": "gpt", "value": r["rejected"][0]["content"]}} for r in explicit]
    encoded = []
    for i, rows in enumerate((explicit, implicit, sharegpt)):
        sub = tmp_path / str(i)
        sub.mkdir()
        cfg = pref_config(sub, rows, explicit[:2], tokenizer={"name_or_path": str(saved_tokenizer(tmp_path))})
        encoded.append(build(sub, cfg)[4]["train"].to_dict())
    assert encoded[0] == encoded[1] == encoded[2]


# -- training ---------------------------------------------------------------------------------------
def _first_step_weights(tmp_path, name, batch, accumulation, rows=6):
    sub = tmp_path / name
    sub.mkdir()
    cfg = pref_config(sub, pair_rows(rows, 0), pair_rows(2, 1), tokenizer={"name_or_path": str(saved_tokenizer(tmp_path))})
    cfg["train"].update(per_device_train_batch_size=batch, gradient_accumulation_steps=accumulation, max_steps=1,
                        optim="sgd", learning_rate=1.0, lr_scheduler_type="constant", warmup_steps=0,
                        eval_strategy="no", data_seed=0)
    trainer = build(sub, cfg)[3]
    trainer.train()
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def test_gradient_accumulation_gives_the_update_of_the_bigger_batch(tmp_path):
    """6 pairs: one batch of 6 == 3 micro-batches of 2 == micro-batches of 4 and 2 (uneven: trl's mean
    per micro-batch would weigh the last two pairs double)."""
    whole = _first_step_weights(tmp_path, "whole", 6, 1)
    for name, batch, acc in (("even", 2, 3), ("uneven", 4, 2)):
        split = _first_step_weights(tmp_path, name, batch, acc)
        for k in whole:
            torch.testing.assert_close(split[k], whole[k], rtol=1e-5, atol=1e-6, msg=f"{name}: {k}")


def test_lora_reference_is_the_base_with_the_adapter_disabled(tmp_path, monkeypatch):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = saved_tokenizer(tmp_path)
    fields = {k: v for k, v in pref_config(tmp_path)["model"]["from_config"].items() if k != "model_type"}
    base = tmp_path / "base"
    LlamaForCausalLM(LlamaConfig(**fields, vocab_size=len(AutoTokenizer.from_pretrained(tok)))).save_pretrained(base)
    made, init = [], LlamaForCausalLM.__init__

    def counted_init(self, *args, **kwargs):
        made.append(1)
        init(self, *args, **kwargs)

    monkeypatch.setattr(LlamaForCausalLM, "__init__", counted_init)
    cfg = pref_config(tmp_path, tokenizer={"name_or_path": str(tok)}, peft={"r": 4, "alpha": 8, "dropout": 0.0})
    cfg["model"] = {"name_or_path": str(base)}
    _, _, tokenizer, trainer, data = build(tmp_path, cfg)
    assert len(made) == 1 and trainer.ref_model is None  # one model: no reference copy
    assert list(trainer.model.peft_config) == ["default"]  # nor trl's copy of the adapter
    for p in trainer.model.parameters():  # a trained adapter, so that policy and base differ
        if p.requires_grad:
            torch.nn.init.normal_(p, std=0.5)
    batch = PreferenceCollator(tokenizer.pad_token_id)([data["train"][i] for i in range(2)])
    from suites.pairs.logps import pair_logps, reference_logps

    ref_c, ref_r = reference_logps(trainer, batch)
    plain = LlamaForCausalLM.from_pretrained(base).eval()
    with torch.no_grad():
        want = pair_logps(plain, batch, chunked=True)[0]
        policy = pair_logps(trainer.model, batch, chunked=True)[0]
    torch.testing.assert_close(ref_c, want.chosen)
    torch.testing.assert_close(ref_r, want.rejected)
    assert not torch.allclose(policy.chosen, want.chosen)


def exact_config(tmp_path, out, **train):
    cfg = pref_config(tmp_path, pair_rows(16, 0), pair_rows(4, 1))
    cfg["output_dir"] = str(out)
    cfg["data"].pop("eval")
    cfg["train"] = {"num_train_epochs": 2, "per_device_train_batch_size": 2, "gradient_accumulation_steps": 2,
                    "learning_rate": 1e-3, "logging_steps": 1, "save_strategy": "steps", "save_steps": 3,
                    "save_total_limit": None, "use_cpu": True, **train}
    return cfg


def test_resume_mid_epoch_reproduces_the_uninterrupted_run(tmp_path):
    """8 optimizer steps (4 an epoch); stopped after step 3, inside epoch 1, and resumed."""
    from safetensors.torch import load_file

    full = tmp_path / "full"
    cfg = write_yaml(tmp_path / "c.yaml", exact_config(tmp_path, full))
    assert run(["train", cfg]) == 0
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(full / "checkpoint-3", resumed / "checkpoint-3")
    assert run(["train", cfg, f"output_dir={resumed}", "--resume"]) == 0

    def losses(d):
        with open(d / "trainer_state.json") as fh:
            return {e["step"]: e["loss"] for e in json.load(fh)["log_history"] if "loss" in e}

    a, b = losses(full), losses(resumed)
    assert sorted(a) == list(range(1, 9)) and a.keys() == b.keys()
    for step in a:
        assert b[step] == pytest.approx(a[step], rel=1e-5, abs=1e-6), step
    wa, wb = load_file(full / "model.safetensors"), load_file(resumed / "model.safetensors")
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=1e-6, msg=k)


@pytest.mark.slow
def test_cli_run_writes_results_and_report_with_preference_curves(tmp_path, capsys):
    cfg = pref_config(tmp_path, preference={"eval_generations": 2},
                      train={"num_train_epochs": 2, "per_device_train_batch_size": 4, "learning_rate": 3e-3,
                             "logging_steps": 1, "save_strategy": "no", "use_cpu": True, "eval_strategy": "epoch",
                             "eval_on_start": True})
    path = write_yaml(tmp_path / "c.yaml", cfg)
    assert run(["train", path]) == 0
    out = tmp_path / "run"
    with open(out / "results.json") as fh:
        results = json.load(fh)
    assert results["task"] == "preference"
    for key in ("eval_loss", "eval_reward_accuracy", "eval_reward_margin", "eval_rewards_chosen",
                "eval_rewards_rejected", "eval_logps_chosen", "eval_logps_rejected", "pairs_truncated"):
        assert key in results, key
    with open(out / "trainer_state.json") as fh:
        history = json.load(fh)["log_history"]
    assert sum("eval_reward_accuracy" in e for e in history) == 3  # before training and after each epoch
    assert any("reward_margin" in e and "loss" in e for e in history)  # training log lines too
    html = (out / "report.html").read_text()
    assert "reward_accuracy" in html and os.path.isfile(out / "figures" / "eval_metrics.png")
    assert os.path.isfile(out / "eval_generations.jsonl") and os.path.isfile(out / "eval_generations_start.jsonl")
    # predict with the trained run: replies to plain prompts, rendered as user turns
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "repeat: red cat"}])
    assert run(["predict", path, "--input", prompts, "--output", str(tmp_path / "pred.jsonl")]) == 0
    with open(tmp_path / "pred.jsonl") as fh:
        assert "completion" in json.loads(fh.readline())
    # export: plain transformers and transformers' GGUF reader load the run, stop at <|im_end|>, same logits
    from transformers import AutoModelForCausalLM, AutoTokenizer

    trained, tok = AutoModelForCausalLM.from_pretrained(out).eval(), AutoTokenizer.from_pretrained(out)
    ids = torch.tensor([tok("<|im_start|>user\nrepeat: red cat<|im_end|>\n")["input_ids"]])
    assert run(["export", str(out), "--format", "safetensors", "--output", str(tmp_path / "st"), "--dtype", "fp32"]) == 0
    assert run(["export", str(out), "--format", "gguf", "--output", str(tmp_path / "gguf")]) == 0
    with open(tmp_path / "st" / "generation_config.json") as fh:
        assert tok.convert_tokens_to_ids("<|im_end|>") in json.load(fh)["eos_token_id"]
    exported = [AutoModelForCausalLM.from_pretrained(tmp_path / "st"),
                AutoModelForCausalLM.from_pretrained(tmp_path / "gguf", gguf_file=next((tmp_path / "gguf").glob("*.gguf")).name)]
    with torch.no_grad():
        want = trained(ids).logits
        for model in exported:
            torch.testing.assert_close(model.eval()(ids).logits.float(), want, rtol=0, atol=2e-2)


@pytest.mark.parametrize("override, message", [
    ("preference.loss=kto", "preference.loss"),
    ("preference.beta=0", "preference.beta must be > 0"),
    ("preference.label_smoothing=0.2", "applies to preference.loss=robust"),
    ("preference.max_prompt_length=64", "must be below preference.max_length"),
    ("train.metric_for_best_model=bleu", "generation metrics need preference.eval_generations"),
])
def test_bad_preference_settings_are_one_line_errors(tmp_path, override, message):
    from tests.conftest import config_error

    assert message in config_error(tmp_path, pref_config(tmp_path), [override])


def test_serve_takes_a_preference_run_as_a_chat_model(tmp_path):
    from suites.serve.loading import check_run_dir

    run_dir = tmp_path / "dpo"
    run_dir.mkdir()
    write_yaml(run_dir / "run_config.yaml", {"task": "preference", "output_dir": str(run_dir),
                                             "model": {"name_or_path": "gpt2"}})
    (run_dir / "config.json").write_text("{}")
    assert check_run_dir(str(run_dir)).task == "sft"
