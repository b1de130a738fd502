"""The fast prefix renderer (tasks/chat_render.py) against tokenizer.apply_chat_template on every
prefix (the way the mask was built before): the same texts, masks and encoded rows, bit for bit,
for varied templates, formats and multi-turn conversations."""

from __future__ import annotations

import random

import pytest

from suites import config
from tasks.instruction import CHATML_TEMPLATE, InstructionTask
from tasks.tokenizer import CHAT_LIKE, train_tokenizer
from tests.sft_common import WORDS, sft_config

LLAMA3 = ("{{ bos_token }}{% for message in messages %}<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
          "{{ message['content'] | trim }}<|eot_id|>{% endfor %}"
          "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")
ZEPHYR = ("{% for message in messages %}{% if message['role'] == 'user' %}{{ '<|user|>\n' + message['content'] + eos_token }}"
          "{% elif message['role'] == 'system' %}{{ '<|system|>\n' + message['content'] + eos_token }}"
          "{% elif message['role'] == 'assistant' %}{{ '<|assistant|>\n' + message['content'] + eos_token }}{% endif %}"
          "{% if loop.last and add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}{% endfor %}")
# a system turn folded into the first user turn, a namespace, an error for bad alternation, tools
MISTRAL = ("{{ bos_token }}{% set ns = namespace(sys='') %}{% if messages[0]['role'] == 'system' %}"
           "{% set ns.sys = messages[0]['content'] + '\n\n' %}{% set loop_messages = messages[1:] %}"
           "{% else %}{% set loop_messages = messages %}{% endif %}{% if tools %}[TOOLS]{{ tools | tojson }}{% endif %}"
           "{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
           "{{ raise_exception('roles must alternate') }}{% endif %}{% if message['role'] == 'user' %}"
           "{{ '[INST] ' + (ns.sys if loop.first else '') + message['content'] + ' [/INST]' }}"
           "{% else %}{{ ' ' + message['content'] | trim + eos_token }}{% endif %}{% endfor %}")
TEMPLATES = {"chatml": CHATML_TEMPLATE, "llama3": LLAMA3, "zephyr": ZEPHYR, "mistral": MISTRAL}


@pytest.fixture(scope="module")
def tokenizer():
    texts = [" ".join(WORDS)] * 5 + ["repeat: hello world instruction input output question answer"] * 5
    return train_tokenizer(texts, 300, CHAT_LIKE)


def _words(rng, lo=0, hi=9):
    text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))
    return text + rng.choice(["", " ", "\n", "  \n"])  # trailing space the templates treat differently


def _rows(fmt: str, n: int, seed: int) -> list:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        turns = rng.randint(1, 5)
        system = _words(rng, 1) if rng.random() < 0.4 else None
        if fmt == "messages":
            msgs = ([{"role": "system", "content": system}] if system else [])
            for _ in range(turns):
                msgs += [{"role": "user", "content": _words(rng, 1)}, {"role": "assistant", "content": _words(rng, 1)}]
            if rng.random() < 0.2:
                msgs.append({"role": "user", "content": _words(rng, 1)})  # ends on a user turn
            rows.append({"messages": msgs})
        elif fmt == "sharegpt":
            conv = []
            for _ in range(turns):
                conv += [{"from": "human", "value": _words(rng, 1)}, {"from": "gpt", "value": _words(rng, 1)}]
            rows.append({"conversations": conv, **({"system": system} if system else {})})
        else:  # alpaca with history
            rows.append({"instruction": _words(rng, 1), "input": _words(rng) if rng.random() < 0.5 else "",
                         "output": _words(rng, 1), "history": [[_words(rng, 1), _words(rng, 1)]
                                                               for _ in range(turns - 1)]})
    return rows


def _encode(tmp_path, tokenizer, template, rows, fast: bool, loss_on):
    tokenizer.chat_template = template
    cfg = config.from_dict(sft_config(tmp_path, rows, rows, sft={"loss_on": loss_on, "max_length": 256}))
    task = InstructionTask(cfg)
    task.fast_render = fast
    splits = task.load("train")
    task.setup(splits, tokenizer)
    rendered = [task.render(r, tokenizer) for r in splits["train"].to_list()]
    ds = task.encode(splits["train"], tokenizer, "train")
    return rendered, ds.to_dict(), task.generation_rows["train"]


@pytest.mark.parametrize("name", sorted(TEMPLATES))
@pytest.mark.parametrize("fmt", ["messages", "sharegpt", "alpaca"])
def test_fast_prefix_rendering_is_bit_identical(tmp_path, tokenizer, name, fmt):
    rows = _rows(fmt, 40, seed=hash((name, fmt)) % 1000)
    for loss_on in ("assistant", "completion"):
        fast = _encode(tmp_path, tokenizer, TEMPLATES[name], rows, True, loss_on)
        slow = _encode(tmp_path, tokenizer, TEMPLATES[name], rows, False, loss_on)
        assert fast[0] == slow[0]  # texts, trained character ranges, prompts, references
        assert fast[1] == slow[1]  # input_ids and labels
        assert fast[2] == slow[2]


def test_a_template_error_reads_the_same(tmp_path, tokenizer):
    from jinja2 import TemplateError

    rows = [{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                          {"role": "tool", "content": "c"}, {"role": "assistant", "content": "d"}]}]
    messages = []
    for fast in (True, False):
        with pytest.raises(TemplateError) as err:
            _encode(tmp_path, tokenizer, MISTRAL, rows, fast, "assistant")
        messages.append(str(err.value))
    assert messages[0] == messages[1] and "roles must alternate" in messages[0]
