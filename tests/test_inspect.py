"""Issue 25, item 6: `trainsuite inspect CONFIG [--rows N]` prints the first prepared examples as the model
sees them (SFT: trained tokens marked) and counts over the data, from the tokenizer alone (no weights)."""

from __future__ import annotations

import os

import pytest

from suites import config
from suites.run import cli
from suites.run.inspect import inspect
from tasks.instruction import CHATML_TEMPLATE
from tasks.tokenizer import CHAT_LIKE, train_tokenizer
from tests.conftest import write_jsonl, write_yaml
from tests.sft_common import WORDS, chat_rows, sft_config

# ChatML that writes a system turn of its own into a conversation without one (as SmolLM2's does)
DEFAULT_SYSTEM = "You are a test bot."
TEMPLATE_WITH_DEFAULT = (
    "{%- if messages[0]['role'] != 'system' -%}{{- '<|im_start|>system\\n" + DEFAULT_SYSTEM + "<|im_end|>\\n' -}}"
    "{%- endif -%}" + CHATML_TEMPLATE)


@pytest.fixture(scope="module")
def tokenizer_only_dir(tmp_path_factory):
    """A model folder holding a tokenizer and nothing else: no config, no weights."""
    path = tmp_path_factory.mktemp("tokenizer_only")
    tok = train_tokenizer([f"repeat: {' '.join(WORDS)}", "be brief"] * 5, 300, CHAT_LIKE)
    tok.chat_template = TEMPLATE_WITH_DEFAULT
    tok.save_pretrained(path)
    return str(path)


def _inspect(capsys, path, *args):
    capsys.readouterr()
    assert cli.run(["inspect", path, *args]) == 0
    captured = capsys.readouterr()
    return captured.out


def test_sft_examples_mark_exactly_the_reply_and_its_end_of_turn(tmp_path, capsys):
    rows = chat_rows(6, seed=3)
    path = write_yaml(tmp_path / "cfg.yaml", sft_config(tmp_path, rows, chat_rows(3, 4)))
    out = _inspect(capsys, path, "--rows", "2")
    assert "\x1b[" not in out  # piped: plain markers, no colour codes
    for row in rows[:2]:
        user, reply = (m["content"] for m in row["messages"])
        assert f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n[[{reply}<|im_end|>]]\n" in out
    assert out.count("<|im_end|>]]") == 2 and "--- train example 3" not in out
    assert "train: 6 rows -> 6 examples" in out and "eval: 3 rows -> 3 examples" in out
    assert "rows whose end-of-turn token is not trained: 0" in out
    assert "default system prompt: none" in out
    assert not os.path.exists(tmp_path / "run")  # nothing written into output_dir
    text = inspect(config.load(path, []), rows=1, color=True)  # a terminal: colour instead of markers
    assert "\x1b[32m" in text and "[[" not in text


def test_counts_from_a_tokenizer_only_folder(tmp_path, capsys, tokenizer_only_dir):
    """Truncated and dropped rows, the share of trained tokens and the rows whose end of turn is cut, as
    computed here from the tokenizer; a model folder without weights is enough (none are loaded)."""
    from transformers import AutoTokenizer

    assert not [n for n in os.listdir(tokenizer_only_dir) if n.endswith((".safetensors", ".bin")) or n == "config.json"]
    tok = AutoTokenizer.from_pretrained(tokenizer_only_dir)
    rows = chat_rows(40, seed=5, min_words=1, max_words=12)
    rows[1]["messages"].insert(0, {"role": "system", "content": "be brief"})
    limit = 64
    raw = sft_config(tmp_path, rows, chat_rows(4, 6), sft={"max_length": limit})
    raw["model"], raw["tokenizer"] = {"name_or_path": tokenizer_only_dir}, {}
    out = _inspect(capsys, write_yaml(tmp_path / "cfg.yaml", raw), "--rows", "3")

    truncated = dropped = unended = tokens = trained = 0
    for row in rows:
        msgs = row["messages"]
        ids = tok(tok.apply_chat_template(msgs, tokenize=False), add_special_tokens=False)["input_ids"]
        start = len(tok(tok.apply_chat_template(msgs[:-1], tokenize=False, add_generation_prompt=True),
                        add_special_tokens=False)["input_ids"])
        end = start + len(tok(msgs[-1]["content"] + "<|im_end|>", add_special_tokens=False)["input_ids"])
        assert tok.decode(ids[start:end]) == msgs[-1]["content"] + "<|im_end|>"  # the reply's tokens
        if len(ids) > limit:
            truncated += 1
            if start >= limit:  # nothing of the reply left
                dropped += 1
                continue
        unended += end > limit
        tokens += min(len(ids), limit)
        trained += min(end, limit) - start
    assert 0 < dropped and 0 < unended < truncated - dropped + 1
    kept = 40 - dropped
    assert (f"train: 40 rows -> {kept} examples; longer than sft.max_length={limit}: {truncated} truncated, "
            f"{dropped} dropped") in out
    assert f"trained tokens: {trained:,} of {tokens:,} ({100 * trained / tokens:.1f}%)" in out
    assert f"rows whose end-of-turn token is not trained: {unended}\n" in out
    # the template's own system turn: in the examples, never trained; counted over the conversations
    assert f"<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>\n<|im_start|>user\n" in out
    assert f"default system prompt: inserted into 39 of 40 (97.5%) train conversations" in out
    assert repr(DEFAULT_SYSTEM) in out and f"[[{DEFAULT_SYSTEM}" not in out


def test_classification_and_seq2seq_configs(tmp_path, capsys, cls_config):
    out = _inspect(capsys, write_yaml(tmp_path / "cls.yaml", cls_config), "--rows", "1")
    first = __import__("json").loads(open(cls_config["data"]["train"]).readline())
    assert f"text: {first['text']}" in out and f"label: {first['label']!r} -> " in out
    assert "[CLS]|" in out and "train: 96 rows" in out and "eval: 30 rows" in out

    from tests.test_seq2seq import base_config, parallel_files, toy_pairs

    pairs = toy_pairs(20) + [("", "EMPTY")]
    cfg = base_config(tmp_path, parallel_files(tmp_path, pairs, "train"), parallel_files(tmp_path, pairs[:5], "val"))
    out = _inspect(capsys, write_yaml(tmp_path / "s2s.yaml", cfg), "--rows", "2")
    assert f"source: {pairs[0][0]}" in out and f"target: {pairs[1][1]}" in out and "</s>" in out
    assert "train: 21 pairs, 1 skipped (empty source or target) -> 20" in out


def test_inspect_loads_no_model(tmp_path, capsys, monkeypatch):
    """No model class builds or loads a model: a from-config run is inspected without one either."""
    import transformers

    def refuse(*args, **kwargs):
        raise AssertionError("inspect loaded a model")

    for cls in (transformers.AutoModelForCausalLM, transformers.AutoModelForSeq2SeqLM,
                transformers.AutoModelForSequenceClassification):
        monkeypatch.setattr(cls, "from_pretrained", refuse)
        monkeypatch.setattr(cls, "from_config", refuse)
    path = write_yaml(tmp_path / "cfg.yaml", sft_config(tmp_path))
    assert "[[" in _inspect(capsys, path, "--rows", "1")


@pytest.mark.parametrize("task, model_type", [("sft", "llama"), ("classification", "bert"), ("seq2seq", "t5"),
                                              ("seq2seq", "bart"), ("seq2seq", None), ("preference", "llama")])
def test_the_task_and_special_tokens_are_the_familys(task, model_type):
    """inspect names the task class and special tokens without importing the trainers: the same as the family's."""
    from types import SimpleNamespace

    from suites.family import family_for
    from suites.run.inspect import task_and_special_tokens

    cfg = SimpleNamespace(task=task, model=SimpleNamespace(from_config={"model_type": model_type} if model_type else None))
    family = family_for(cfg)
    assert task_and_special_tokens(cfg) == (family.task_cls, family.special_tokens)


def test_preference_pairs_show_the_shared_prompt_and_both_replies_marked(tmp_path, capsys):
    from tests.preference_common import pair_rows, pref_config

    rows = pair_rows(4, 0)
    path = write_yaml(tmp_path / "cfg.yaml", pref_config(tmp_path, rows, pair_rows(2, 1)))
    out = _inspect(capsys, path, "--rows", "1")
    user, chosen, rejected = rows[0]["prompt"][0]["content"], rows[0]["chosen"][0]["content"], \
        rows[0]["rejected"][0]["content"]
    head = f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
    assert f"{head}[[{chosen}<|im_end|>]]" in out and f"{head}[[{rejected}<|im_end|>]]" in out
    assert "train: 4 pairs -> 4" in out and "--- train pair 2" not in out
