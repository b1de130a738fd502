"""SFT data: format detection, the trained-token masks each format and loss_on give, bad input."""

from __future__ import annotations

import pytest

from suites import config
from suites.errors import MISTAKES
from tasks.instruction import CHATML_TEMPLATE, InstructionTask
from tasks.tokenizer import CHAT_LIKE, train_tokenizer
from tests.conftest import write_jsonl
from tests.sft_common import WORDS, chat_rows, sft_config


@pytest.fixture(scope="module")
def tokenizer():
    texts = [" ".join(WORDS)] * 5 + ["repeat: hello world instruction input output question answer"] * 5
    tok = train_tokenizer(texts, 300, CHAT_LIKE)
    tok.chat_template = CHATML_TEMPLATE
    return tok


def _task(tmp_path, rows, tokenizer, split="train", **sections):
    cfg = config.from_dict(sft_config(tmp_path, rows, rows, **sections))
    task = InstructionTask(cfg)
    splits = task.load("train")
    task.setup(splits, tokenizer)
    return task, task.encode(splits["train" if split == "predict" else split], tokenizer, split)


def _trained(tokenizer, row) -> str:
    return tokenizer.decode([t for t, lab in zip(row["input_ids"], row["labels"]) if lab != -100])


CONV = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "red"},
        {"role": "assistant", "content": "cat"}, {"role": "user", "content": "blue"},
        {"role": "assistant", "content": "dog"}]


@pytest.mark.parametrize("loss_on, expected", [
    ("assistant", "cat<|im_end|>dog<|im_end|>"),
    ("completion", "dog<|im_end|>"),
])
def test_messages_masks_follow_the_template(tmp_path, tokenizer, loss_on, expected):
    task, ds = _task(tmp_path, [{"messages": CONV}] * 2, tokenizer, sft={"loss_on": loss_on})
    assert task.format == "messages"
    assert _trained(tokenizer, ds[0]).replace(" ", "") == expected


def test_loss_on_all_trains_every_token_but_the_first(tmp_path, tokenizer):
    _, ds = _task(tmp_path, [{"messages": CONV}] * 2, tokenizer, sft={"loss_on": "all"})
    labels = ds[0]["labels"]
    assert labels[0] == -100 and all(x != -100 for x in labels[1:])


@pytest.mark.parametrize("rows, fmt, expected", [
    ([{"conversations": [{"from": "human", "value": "red"}, {"from": "gpt", "value": "cat"}]}],
     "sharegpt", "cat<|im_end|>"),
    ([{"instruction": "name a pet", "input": "red", "output": "cat"}], "alpaca", "cat<|im_end|>"),
    ([{"prompt": "red is", "completion": " cat"}], "prompt_completion", "cat<|endoftext|>"),
])
def test_formats_detected_and_masked(tmp_path, tokenizer, rows, fmt, expected):
    task, ds = _task(tmp_path, rows * 2, tokenizer)
    assert task.format == fmt
    assert _trained(tokenizer, ds[0]).replace(" ", "") == expected


def test_text_format_trains_on_all_and_refuses_completion_loss(tmp_path, tokenizer):
    task, ds = _task(tmp_path, [{"text": "red cat blue dog"}] * 2, tokenizer)
    assert task.format == "text" and task.loss_on == "all"
    assert ds[0]["input_ids"][-1] == tokenizer.eos_token_id
    with pytest.raises(MISTAKES, match="sft.loss_on=assistant needs prompt/completion"):
        _task(tmp_path, [{"text": "red cat"}] * 2, tokenizer, sft={"loss_on": "assistant"})


def test_data_format_key_overrides_detection_and_unknown_columns_fail(tmp_path, tokenizer):
    with pytest.raises(MISTAKES, match="cannot tell the SFT data format"):
        config.from_dict(sft_config(tmp_path, [{"question": "a", "answer": "b"}]))
    with pytest.raises(MISTAKES, match="no column 'messages'"):
        config.from_dict(sft_config(tmp_path, [{"text": "a"}], data={"format": "messages"}))


def test_rows_with_no_assistant_turn_are_counted_and_fail(tmp_path, tokenizer):
    rows = chat_rows(4) + [{"messages": [{"role": "user", "content": "red"}]}] * 2
    with pytest.raises(MISTAKES) as err:
        _task(tmp_path, rows, tokenizer)
    msg = str(err.value)
    assert "2 of 6 rows have no trained tokens" in msg and "line 5" in msg and "no assistant turn" in msg


def test_roles_out_of_order_name_file_and_line(tmp_path, tokenizer):
    rows = chat_rows(2) + [{"messages": [{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}]}]
    with pytest.raises(MISTAKES, match=r"train.jsonl: line 3: roles out of order"):
        _task(tmp_path, rows, tokenizer)
    rows = chat_rows(2) + [{"messages": [{"role": "user", "content": "x"}, {"role": "user", "content": "y"}]}]
    with pytest.raises(MISTAKES, match=r"line 3: roles out of order: two user turns"):
        _task(tmp_path, rows, tokenizer)


def test_template_without_prefix_property_is_refused_for_assistant_loss(tmp_path, tokenizer):
    tok = train_tokenizer([" ".join(WORDS)] * 3, 300, CHAT_LIKE)
    # renders the number of turns first: a prefix of the conversation is not a prefix of its rendering
    tok.chat_template = "{{ messages|length }}{% for m in messages %}{{ m['content'] }}{% endfor %}"
    with pytest.raises(MISTAKES, match="assistant-only loss mask needs"):
        _task(tmp_path, chat_rows(2), tok)


@pytest.mark.parametrize("mode", ["truncate", "drop"])
def test_overlong_rows_truncated_or_dropped_and_counted(tmp_path, tokenizer, mode):
    rows = chat_rows(4, max_words=3) + chat_rows(2, seed=5, min_words=30, max_words=30)
    task, ds = _task(tmp_path, rows, tokenizer, sft={"max_length": 120, "overlong": mode})
    stats = task.stats["train"]
    assert all(len(x) <= 120 for x in ds["input_ids"])
    if mode == "truncate":
        assert stats["truncated"] == 2 and len(ds) == 6
    else:
        assert stats["dropped_overlong"] == 2 and len(ds) == 4
    # generation eval (sft.eval_generations) uses the rows the loss uses, not the dropped ones
    assert len(task.generation_rows["train"]) == len(ds)


def _user_then(*replies):
    turns = []
    for i, reply in enumerate(replies):
        turns += [{"role": "user", "content": f"repeat: red {i}"}, {"role": "assistant", "content": reply}]
    return {"messages": turns}


@pytest.mark.parametrize("blank", [
    _user_then(""),
    _user_then("  \n\t"),
    _user_then("red", ""),  # one empty turn of several: the whole conversation goes
    {"instruction": "name a pet", "input": "red", "output": " "},
    {"prompt": "red is", "completion": ""},
])
def test_rows_with_an_empty_reply_are_dropped_and_counted_in_one_warning(tmp_path, tokenizer, caplog, blank):
    good = chat_rows(4) if "messages" in blank else [dict(blank, **{k: "cat" for k in ("output", "completion")
                                                                       if k in blank})] * 4
    rows = good[:2] + [blank] * 7 + good[2:]
    with caplog.at_level("WARNING", logger="trainsuite"):
        task, ds = _task(tmp_path, rows, tokenizer)
    assert len(ds) == 4 and task.stats["train"]["dropped_empty_reply"] == 7
    assert len(task.generation_rows["train"]) == 4
    warned = [r.getMessage() for r in caplog.records if "empty or whitespace-only assistant reply" in r.getMessage()]
    train = str(tmp_path / "train.jsonl")
    assert warned == [f"data.train: dropped 7 of 11 rows with an empty or whitespace-only assistant reply (the whole "
                      f"conversation): {train}:3, {train}:4, {train}:5, {train}:6, {train}:7, ..."]


def test_all_replies_empty_is_refused_naming_the_file(tmp_path, tokenizer):
    rows = [_user_then(""), _user_then(" ")]
    with pytest.raises(MISTAKES, match=r"data.train: .*train.jsonl: every row has an empty or whitespace-only "
                                       r"assistant reply \(2 rows: .*train.jsonl:1, .*train.jsonl:2\)"):
        _task(tmp_path, rows, tokenizer)


def test_chatml_tokens_added_when_the_tokenizer_lacks_a_template(tmp_path):
    tok = train_tokenizer([" ".join(WORDS)] * 3, 300, CHAT_LIKE.__class__(pad="<pad>", eos="</s>"))
    assert tok.chat_template is None and "<|im_start|>" not in tok.get_vocab()
    task, ds = _task(tmp_path, chat_rows(2), tok)
    assert tok.chat_template == CHATML_TEMPLATE and "<|im_end|>" in tok.get_vocab()
    assert _trained(tok, ds[0]).endswith("<|im_end|>")


def test_generation_prompts_end_with_the_assistant_header(tmp_path, tokenizer):
    task, _ = _task(tmp_path, [{"messages": CONV}] * 2, tokenizer)
    prompt, ref = task.generation_rows["train"][0]
    assert prompt.endswith("<|im_start|>user\nblue<|im_end|>\n<|im_start|>assistant\n") and ref == "dog"


def test_eval_in_another_format_than_train_fails(tmp_path, tokenizer):
    raw = sft_config(tmp_path, chat_rows(2), [{"text": "red cat"}])
    with pytest.raises(MISTAKES, match="data format text differs from the training data's messages"):
        InstructionTask(config.from_dict(raw)).load("train")


def test_alpaca_system_and_history_columns_become_turns(tmp_path, tokenizer):
    """LLaMA-Factory's alpaca rows: `system` is the first turn, `history` pairs come before the
    instruction and their answers are trained; sharegpt rows take a `system` column too."""
    row = {"system": "be brief", "history": [["red", "cat"]], "instruction": "blue", "output": "dog"}
    task, ds = _task(tmp_path, [row, row], tokenizer)
    assert _trained(tokenizer, ds[0]) == "cat<|im_end|>dog<|im_end|>"
    text = tokenizer.decode(ds[0]["input_ids"])
    assert text.startswith("<|im_start|>system\nbe brief<|im_end|>") and "<|im_start|>user\nblue" in text
    share = {"system": "be brief", "conversations": [{"from": "human", "value": "red"}, {"from": "gpt", "value": "cat"}]}
    _, ds = _task(tmp_path, [share, share], tokenizer)
    assert tokenizer.decode(ds[0]["input_ids"]).startswith("<|im_start|>system\nbe brief<|im_end|>")


@pytest.mark.parametrize("bad", [{"history": [["red"]]}, {"history": "red cat"}, {"system": 3}])
def test_malformed_alpaca_history_or_system_names_the_line(tmp_path, tokenizer, bad):
    rows = [{"instruction": "red", "output": "cat"}, {"instruction": "blue", "output": "dog", **bad}]
    with pytest.raises(MISTAKES) as e:
        _task(tmp_path, rows, tokenizer)
    msg = str(e.value)
    assert "line 2" in msg and ("history" in msg or "system" in msg) and "\n" not in msg


def test_a_field_first_seen_after_the_first_record_is_kept(tmp_path, tokenizer):
    """Alpaca files often omit `input` where it is empty; the rows that have it must keep it
    (datasets' from_list takes the first record's fields only)."""
    rows = [{"instruction": "red", "output": "cat"}, {"instruction": "blue", "input": "moon", "output": "dog"}]
    _, ds = _task(tmp_path, rows, tokenizer)
    assert "blue\n\nmoon" in tokenizer.decode(ds[1]["input_ids"])


def test_chatml_labels_cover_each_reply_and_its_end_of_turn_but_not_the_newline(tmp_path, tokenizer):
    """Issue 25: compared with trl on the real SmolLM2 template, our assistant-only labels hold each reply and
    its <|im_end|>, and not the newline the template writes after it (trl trains that newline too)."""
    _, ds = _task(tmp_path, [{"messages": CONV}] * 2, tokenizer)
    ids, labels = ds[0]["input_ids"], ds[0]["labels"]
    pieces = [tokenizer.decode([t]) for t in ids]
    trained = [lab != -100 for lab in labels]
    assert all(lab in (-100, t) for t, lab in zip(ids, labels))
    spans, start = [], None  # runs of trained tokens, as text
    for i, on in enumerate([*trained, False]):
        if on and start is None:
            start = i
        elif not on and start is not None:
            spans.append((start, i))
            start = None
    assert ["".join(pieces[s:e]).strip() for s, e in spans] == ["cat<|im_end|>", "dog<|im_end|>"]
    for s, e in spans:
        assert pieces[e - 1] == "<|im_end|>" and "".join(pieces[:s]).endswith("assistant\n")
        assert e == len(ids) or pieces[e] == "\n"  # the newline after the end of turn: not trained
