"""Shared pieces of the preference tests: toy pairs on a tiny Llama, configs."""

from __future__ import annotations

import copy
import random

from tests.conftest import write_jsonl, write_yaml
from tests.sft_common import TINY_LLAMA, WORDS


def pair_rows(n, seed=0, chat=True):
    """The chosen reply repeats the user's words; the rejected one says them backwards with an extra word."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(2, 5))]
        chosen, rejected = " ".join(words), " ".join(words[::-1] + [rng.choice(WORDS)])
        prompt = "repeat: " + " ".join(words)
        if chat:
            rows.append({"prompt": [{"role": "user", "content": prompt}],
                         "chosen": [{"role": "assistant", "content": chosen}],
                         "rejected": [{"role": "assistant", "content": rejected}]})
        else:
            rows.append({"prompt": prompt + " =", "chosen": " " + chosen, "rejected": " " + rejected})
    return rows


def pref_config(tmp_path, train_rows=None, eval_rows=None, **sections):
    """A from-scratch tiny-Llama preference config dict; `sections` update its top-level blocks."""
    train = write_jsonl(tmp_path / "train.jsonl", train_rows if train_rows is not None else pair_rows(16, 0))
    eval_ = write_jsonl(tmp_path / "eval.jsonl", eval_rows if eval_rows is not None else pair_rows(6, 1))
    cfg = {
        "task": "preference",
        "output_dir": str(tmp_path / "run"),
        "model": {"from_config": dict(TINY_LLAMA)},
        "tokenizer": {"train_from_data": True, "vocab_size": 300},
        "data": {"train": train, "eval": eval_},
        "preference": {"max_length": 64, "max_prompt_length": 32},
        "generation": {"max_new_tokens": 6},
        "train": {"num_train_epochs": 1, "per_device_train_batch_size": 4, "learning_rate": 1e-3,
                  "logging_steps": 1, "save_strategy": "no", "use_cpu": True},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict) and key != "tokenizer":
            cfg[key] = {**cfg[key], **copy.deepcopy(value)}
        else:
            cfg[key] = value
    return cfg


def build(tmp_path, cfg, mode="train", name="c.yaml"):
    """The runner's parts for `cfg` (config written to tmp_path/name and loaded as a user's would be)."""
    from suites import config
    from suites.run import runner

    return runner.build(config.load(write_yaml(tmp_path / name, cfg)), mode)


def saved_tokenizer(tmp_path):
    """A tokenizer trained once on the default pairs (with the ChatML tokens) and saved, for several
    configs or a saved base model to share."""
    path = tmp_path / "tok"
    if not path.exists():
        sub = tmp_path / "tok-run"
        sub.mkdir()
        build(sub, pref_config(sub))[2].save_pretrained(path)
    return path
