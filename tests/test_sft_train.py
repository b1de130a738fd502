"""SFT training correctness: packing == no packing, accumulation == big batch, NEFTune per document,
attention implementations that would leak across packed documents refused."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from collators.sft import (PackedCollator, PaddingCollator, best_fit_decreasing, document_lengths,
                           pack_documents)
from suites import config
from suites.run import runner
from suites.errors import MISTAKES
from suites.sft import neftune_noise
from tests.sft_common import TINY_LLAMA, chat_rows, sft_config


def _docs(n=6, seed=0, vocab=100):
    g = torch.Generator().manual_seed(seed)
    docs = []
    for i in range(n):
        length = int(torch.randint(3, 20, (1,), generator=g))
        ids = torch.randint(5, vocab, (length,), generator=g).tolist()
        labels = [-100] + [t if j % 3 else -100 for j, t in enumerate(ids[1:], 1)]  # a partial loss mask
        docs.append({"input_ids": ids, "labels": labels})
    return docs


def _nll_sum(model, batch):
    # use_cache=False as in training: with a cache, transformers does not look for packed documents
    logits = model(**{k: v for k, v in batch.items() if k != "labels"}, use_cache=False).logits.float()
    labels = batch["labels"][:, 1:]
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), labels.reshape(-1),
                           ignore_index=-100, reduction="sum"), int((labels != -100).sum())


def test_best_fit_decreasing_fills_bins_and_keeps_every_document():
    lengths = [7, 5, 4, 3, 3, 2, 1, 9]
    bins = best_fit_decreasing(lengths, 10)
    assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in b) <= 10 for b in bins)
    assert len(bins) == 4  # 34 tokens need at least 4 bins of 10


# flex_attention is the default on CUDA (suites/sft_speed.py); its forward pass runs on CPU too, so
# the block mask it builds from the position-id restarts is checked here (its backward is GPU-only)
@pytest.mark.parametrize("attn", ["sdpa", "eager", "flex_attention"])
def test_packed_loss_equals_unpacked_loss(attn):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    fields = {k: v for k, v in TINY_LLAMA.items() if k != "model_type"}
    model = LlamaForCausalLM(LlamaConfig(vocab_size=100, attn_implementation=attn, **fields)).eval()
    docs = _docs()
    import datasets

    packed = pack_documents(datasets.Dataset.from_list(docs), 40)
    batch = PackedCollator()(list(packed))
    assert "attention_mask" not in batch and batch["input_ids"].shape[0] == 1
    assert (batch["position_ids"] == 0).sum() == len(docs)
    with torch.no_grad():
        packed_sum, packed_n = _nll_sum(model, batch)
        alone = [_nll_sum(model, PaddingCollator(0)([d])) for d in docs]
        padded_sum, padded_n = _nll_sum(model, PaddingCollator(0)(docs))
    alone_sum, alone_n = sum(s for s, _ in alone), sum(n for _, n in alone)
    assert packed_n == alone_n == padded_n
    torch.testing.assert_close(packed_sum / packed_n, alone_sum / alone_n, rtol=0, atol=1e-5)
    torch.testing.assert_close(padded_sum / padded_n, alone_sum / alone_n, rtol=0, atol=1e-5)
    # and the leak we guard against is real: the same row with plain positions (no restarts) differs
    leaky = dict(batch, position_ids=torch.arange(batch["input_ids"].shape[1])[None])
    with torch.no_grad():
        leaky_sum, _ = _nll_sum(model, leaky)
    assert abs(float(leaky_sum - packed_sum)) / packed_n > 1e-3


def _update(tmp_path, name, batch, accum, packing=False):
    """The parameter change of one optimizer step (plain SGD, lr 1, no clipping) on the same 8 rows."""
    (tmp_path / name).mkdir()
    cfg = config.from_dict(sft_config(
        tmp_path / name, chat_rows(8, seed=3, max_words=8), sft={"packing": packing, "max_length": 256},
        train={"per_device_train_batch_size": batch, "gradient_accumulation_steps": accum, "max_steps": 1,
               "optim": "sgd", "learning_rate": 1.0, "lr_scheduler_type": "constant", "warmup_steps": 0,
               "max_grad_norm": 0.0, "use_cpu": True, "save_strategy": "no"}))
    _, _, _, trainer, _ = runner.build(cfg, "train")
    before = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
    trainer.train()
    return {k: v.detach() - before[k] for k, v in trainer.model.named_parameters()}


def test_accumulation_and_packing_give_the_same_update(tmp_path):
    big = _update(tmp_path, "b8", 8, 1)
    small = _update(tmp_path, "b2x4", 2, 4)
    packed = _update(tmp_path, "packed", 8, 1, packing=True)  # all 8 documents in a few bins, one step
    assert any(float(v.abs().max()) > 1e-4 for v in big.values())
    for k in big:
        torch.testing.assert_close(small[k], big[k], rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(packed[k], big[k], rtol=1e-4, atol=1e-6)


def test_neftune_noise_scales_with_each_documents_own_length(tmp_path):
    cfg = config.from_dict(sft_config(tmp_path, sft={"packing": True, "neftune_alpha": 5.0}))
    _, _, _, trainer, _ = runner.build(cfg, "train")
    emb = trainer.model.get_input_embeddings()
    batch = PackedCollator()([{"input_ids": [7] * 4 + [9] * 60, "labels": [1] * 64, "seq_lengths": [4, 60]}])
    lengths = document_lengths(batch)
    assert lengths[0, :4].tolist() == [4] * 4 and lengths[0, 4:].tolist() == [60] * 60
    clean = F.embedding(batch["input_ids"], emb.weight).detach()
    d = clean.size(-1)
    trainer.model.train()
    trainer._doc_lengths = lengths
    torch.manual_seed(0)
    noise = (emb(batch["input_ids"]) - clean).abs()
    short_bound, long_bound = 5.0 / (4 * d) ** 0.5, 5.0 / (60 * d) ** 0.5
    assert noise[0, :4].max() <= short_bound + 1e-6 and noise[0, :4].max() > 0.8 * short_bound
    assert noise[0, 4:].max() <= long_bound + 1e-6 and noise[0, 4:].max() > 0.8 * long_bound
    # the padded/packed-length scaling of transformers would bound the short document by 5/sqrt(64 d)
    assert noise[0, :4].max() > 5.0 / (64 * d) ** 0.5
    trainer.model.eval()  # no noise at evaluation
    assert torch.equal(emb(batch["input_ids"]).detach(), clean)


def test_neftune_off_adds_no_noise_and_padding_rows_get_none(tmp_path):
    cfg = config.from_dict(sft_config(tmp_path))
    _, _, _, trainer, _ = runner.build(cfg, "train")
    emb = trainer.model.get_input_embeddings()
    trainer.model.train()
    ids = torch.tensor([[5, 6, 7]])
    assert torch.equal(emb(ids), F.embedding(ids, emb.weight))
    pad = PaddingCollator(0)([{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [5], "labels": [-100]}])
    lengths = document_lengths(pad)
    assert lengths.tolist() == [[3, 3, 3], [1, 0, 0]]
    noise = neftune_noise(torch.zeros(2, 3, 8), lengths, 5.0)
    assert torch.all(noise[1, 1:] == 0) and torch.all(noise[0].abs() <= 5.0 / (3 * 8) ** 0.5)


def test_leaky_attention_refused_with_packing(tmp_path):
    raw = sft_config(tmp_path, sft={"packing": True}, model={"from_config": dict(TINY_LLAMA),
                                                             "attn_implementation": "paged|sdpa"})
    with pytest.raises(MISTAKES, match="attend to each other"):
        config.from_dict(raw)
    raw["sft"]["packing"] = False
    config.from_dict(raw)  # fine without packing
    raw["sft"]["packing"], raw["model"]["attn_implementation"] = True, "flex_attention"
    config.from_dict(raw)


def test_fp16_request_turns_the_bf16_default_off(monkeypatch):
    from types import SimpleNamespace

    import torch

    from suites.sft import SFTFamily

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    cfg = SimpleNamespace(train={"fp16": True}, peft=None, sft=SimpleNamespace(packing=True, batch_tokens=None),
                          model=SimpleNamespace(attn_implementation=None, trust_remote_code=False))
    fam = SFTFamily.__new__(SFTFamily)
    fam.cfg = cfg
    assert fam.defaults["bf16"] is False
