"""Shared pieces of the SFT tests: a tiny Llama, toy instruction data, configs."""

from __future__ import annotations

import copy
import random

from tests.conftest import write_jsonl

TINY_LLAMA = {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 256,
              "tie_word_embeddings": False}
WORDS = "red green blue cat dog bird sun moon tree river stone fire".split()


def chat_rows(n, seed=0, min_words=2, max_words=6):
    """A learnable task of varied lengths: the assistant repeats the user's words."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a = [rng.choice(WORDS) for _ in range(rng.randint(min_words, max_words))]
        rows.append({"messages": [{"role": "user", "content": "repeat: " + " ".join(a)},
                                  {"role": "assistant", "content": " ".join(a)}]})
    return rows


def sft_config(tmp_path, train_rows=None, eval_rows=None, **sections):
    """A from-scratch tiny-Llama SFT config dict; `sections` update its top-level blocks."""
    train = write_jsonl(tmp_path / "train.jsonl", train_rows if train_rows is not None else chat_rows(32, 0))
    eval_ = write_jsonl(tmp_path / "eval.jsonl", eval_rows if eval_rows is not None else chat_rows(12, 1))
    cfg = {
        "task": "sft",
        "output_dir": str(tmp_path / "run"),
        "model": {"from_config": dict(TINY_LLAMA)},
        "tokenizer": {"train_from_data": True, "vocab_size": 300},
        "data": {"train": train, "eval": eval_},
        "sft": {"max_length": 64},
        "generation": {"max_new_tokens": 6},
        "train": {"num_train_epochs": 1, "per_device_train_batch_size": 8, "learning_rate": 1e-3,
                  "logging_steps": 2, "save_strategy": "no", "use_cpu": True},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **copy.deepcopy(value)}
        else:
            cfg[key] = value
    return cfg
