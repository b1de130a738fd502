"""SFT speed defaults: token-budget batches (within budget, every document once, same update as
unpacked), packing on by default where it cannot leak, and the machine-dependent choices
(attention implementation, Liger) with the machine mocked."""

from __future__ import annotations

import random

import pytest
import torch

from collators.sft import PaddingCollator, PackedCollator, budget_groups, group_documents
from suites import config, sft_speed
from suites.run import runner
from suites.errors import MISTAKES
from tests.sft_common import TINY_LLAMA, chat_rows, sft_config


def _dataset(n=200, seed=0, longest=64):
    import datasets

    rng = random.Random(seed)
    docs = []
    for i in range(n):
        length = min(longest, max(2, int(rng.lognormvariate(2.5, 0.8))))
        ids = [rng.randrange(5, 100) for _ in range(length)]
        docs.append({"input_ids": ids, "labels": [-100] + ids[1:], "doc": i})
    return datasets.Dataset.from_list(docs)


@pytest.mark.parametrize("packing", [True, False])
@pytest.mark.parametrize("multiple", [None, 8])
def test_token_budget_batches_stay_within_budget_and_cover_every_document_once(packing, multiple):
    ds = _dataset()
    budget = 128
    groups = group_documents(ds, budget, packing, multiple, seed=1)
    seen = []
    for row in groups:
        batch = (PackedCollator() if packing else PaddingCollator(0, multiple))([row])
        assert batch["input_ids"].numel() <= budget  # padding included
        assert sum(row["seq_lengths"]) == len(row["input_ids"])
        docs = PaddingCollator(0)([row])["input_ids"].shape[0]
        assert docs == len(row["seq_lengths"])
        seen.extend(row["input_ids"][:1])
    # every document exactly once: the multiset of documents is unchanged
    flat = sorted(tuple(x) for x in ds["input_ids"])
    regrouped = []
    for row in groups:
        start = 0
        for n in row["seq_lengths"]:
            regrouped.append(tuple(row["input_ids"][start:start + n]))
            start += n
    assert sorted(regrouped) == flat
    assert len(groups) < len(ds) // 4  # real batches, not one document each


def test_budget_groups_are_length_bucketed_and_a_long_document_goes_alone():
    lengths = [5, 100, 7, 6, 30, 31, 5]
    groups = budget_groups(lengths, 64, seed=0)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    assert [1] in groups  # longer than the budget: alone
    for g in groups:
        assert len(g) == 1 or len(g) * max(lengths[i] for i in g) <= 64


def _update(tmp_path, name, sft, train):
    """The parameter change of one optimizer step (plain SGD, lr 1, no clipping) on the same 8 rows."""
    (tmp_path / name).mkdir()
    raw = sft_config(tmp_path / name, chat_rows(8, seed=3, max_words=8), sft={"max_length": 64, **sft})
    raw["train"] = {"num_train_epochs": 1, "max_steps": 1, "optim": "sgd", "learning_rate": 1.0,
                    "lr_scheduler_type": "constant", "warmup_steps": 0, "max_grad_norm": 0.0, "use_cpu": True,
                    "save_strategy": "no", **train}
    cfg = config.from_dict(raw)
    _, _, _, trainer, _ = runner.build(cfg, "train")
    micro_batches = len(trainer.get_train_dataloader())
    before = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
    trainer.train()
    return {k: v.detach() - before[k] for k, v in trainer.model.named_parameters()}, micro_batches


def test_token_budget_batches_give_the_same_update_as_one_unpacked_batch(tmp_path):
    big, _ = _update(tmp_path, "b8", {"packing": False}, {"per_device_train_batch_size": 8})
    # several micro-batches accumulated into one optimizer step (accumulation >= their number)
    packed, n_packed = _update(tmp_path, "packed", {"packing": True, "batch_tokens": 64},
                               {"gradient_accumulation_steps": 16})
    padded, n_padded = _update(tmp_path, "padded", {"packing": False, "batch_tokens": 64},
                               {"gradient_accumulation_steps": 16})
    assert n_packed > 1 and n_padded > 1
    assert any(float(v.abs().max()) > 1e-4 for v in big.values())
    for k in big:
        torch.testing.assert_close(packed[k], big[k], rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(padded[k], big[k], rtol=1e-4, atol=1e-6)


def test_packing_on_by_default_except_where_it_could_leak(tmp_path):
    def packing(**sections):
        return config.from_dict(sft_config(tmp_path, **sections)).sft.packing

    assert packing() is True
    assert packing(sft={"packing": False}) is False
    assert packing(model={"from_config": dict(TINY_LLAMA), "attn_implementation": "paged|sdpa"}) is False
    assert packing(model={"from_config": dict(TINY_LLAMA), "trust_remote_code": True}) is False
    assert packing(model={"from_config": dict(TINY_LLAMA), "attn_implementation": "flex_attention"}) is True


def test_batch_tokens_checked_at_config_time(tmp_path):
    with pytest.raises(MISTAKES, match="at least sft.max_length"):
        config.from_dict(sft_config(tmp_path, sft={"max_length": 64, "batch_tokens": 32}))
    with pytest.raises(MISTAKES, match="exclude each other"):
        config.from_dict(sft_config(tmp_path, sft={"batch_tokens": 512}))  # sft_config sets a batch size


def _machine(monkeypatch, cuda, capability=(9, 0), installed=()):
    monkeypatch.setattr(sft_speed, "_cuda", lambda: cuda)
    monkeypatch.setattr(sft_speed, "_capability", lambda: capability)
    monkeypatch.setattr(sft_speed, "_installed", lambda m: m in installed)


def test_default_attention_choice(monkeypatch):
    flex = "torch.nn.attention.flex_attention"
    _machine(monkeypatch, cuda=False, installed=(flex, "flash_attn"))
    assert sft_speed.default_attention() == "sdpa"  # CPU
    _machine(monkeypatch, cuda=True, installed=(flex,))
    assert sft_speed.default_attention() == "flex_attention"
    _machine(monkeypatch, cuda=True, capability=(8, 0), installed=(flex, "flash_attn"))
    assert sft_speed.default_attention() == "flash_attention_2"
    _machine(monkeypatch, cuda=True, capability=(7, 5), installed=(flex, "flash_attn"))
    assert sft_speed.default_attention() == "flex_attention"  # flash-attention 2 needs Ampere or newer
    _machine(monkeypatch, cuda=True, capability=(9, 0), installed=(flex, "flash_attn", "flash_attn_interface"))
    assert sft_speed.default_attention() == "flash_attention_3"
    _machine(monkeypatch, cuda=True, installed=())
    assert sft_speed.default_attention() == "sdpa"
    from suites.config.sft import PACKING_SAFE_ATTENTION

    for case in [(False, (0, 0), ()), (True, (9, 0), (flex, "flash_attn", "flash_attn_interface")),
                 (True, (8, 6), ("flash_attn",)), (True, (8, 0), (flex,))]:
        _machine(monkeypatch, *case)
        assert sft_speed.default_attention() in PACKING_SAFE_ATTENTION  # never one that leaks


def test_attention_and_liger_defaults_respect_the_users_choice(monkeypatch, tmp_path):
    cfg = config.from_dict(sft_config(tmp_path))
    _machine(monkeypatch, cuda=True, installed=("torch.nn.attention.flex_attention", "liger_kernel"))
    assert sft_speed.attention_kwargs(cfg) == {"attn_implementation": "flex_attention"}
    assert sft_speed.speed_defaults(cfg) == {"use_liger_kernel": True}
    cfg.model.attn_implementation, cfg.train["use_liger_kernel"] = "eager", False
    assert sft_speed.attention_kwargs(cfg) == {} and sft_speed.speed_defaults(cfg) == {}
    _machine(monkeypatch, cuda=False, installed=("liger_kernel",))
    del cfg.train["use_liger_kernel"]
    assert sft_speed.speed_defaults(cfg) == {}  # Liger's kernels are Triton: CUDA only


def test_generation_switches_flex_attention_to_sdpa_and_back():
    from transformers import LlamaConfig, LlamaForCausalLM

    fields = {k: v for k, v in TINY_LLAMA.items() if k != "model_type"}
    model = LlamaForCausalLM(LlamaConfig(vocab_size=50, attn_implementation="flex_attention", **fields))
    restore = sft_speed.use_generation_attention(model)
    assert model.config._attn_implementation == "sdpa"
    restore()
    assert model.config._attn_implementation == "flex_attention"
    model.set_attn_implementation("eager")
    sft_speed.use_generation_attention(model)()  # anything else is left alone
    assert model.config._attn_implementation == "eager"


def test_throughput_benchmark_runs_in_tiny_mode():
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "sft_throughput.py")
    spec = importlib.util.spec_from_file_location("sft_throughput", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.main(["--tiny", "--steps", "2", "--warmup", "1", "--max-length", "64",
                       "--settings", "ours,trl_bfd"])
    assert [r["setting"] for r in rows] == ["ours", "trl_bfd"]
    for r in rows:
        assert r["tokens_per_s"] > 0 and 0 < r["tokens_per_step"] <= 8 * 64 and r["packing"]
