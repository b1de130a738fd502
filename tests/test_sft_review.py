"""SFT data edge cases: null or mistyped columns, chat templates that refuse a conversation or
put the answer's first token across the prompt boundary, conversational prompt/completion,
multi-turn predict prompts."""

from __future__ import annotations

import pytest

from suites import config
from suites.errors import MISTAKES
from tasks.instruction import CHATML_TEMPLATE
from tasks.tokenizer import CHAT_LIKE, train_tokenizer
from tests.sft_common import WORDS, chat_rows, sft_config
from tests.test_sft_data import _task

TEXTS = [" ".join(WORDS)] * 5 + ["repeat: hello world instruction input output question answer User Assistant"] * 5


def _tok(template=CHATML_TEMPLATE, vocab=300):
    tok = train_tokenizer(TEXTS, vocab, CHAT_LIKE)
    tok.chat_template = template
    return tok




def _trained(tokenizer, row) -> list[str]:
    return [tokenizer.decode([t]) for t, lab in zip(row["input_ids"], row["labels"]) if lab != -100]


USER_ASSISTANT = [{"role": "user", "content": "red"}, {"role": "assistant", "content": "cat"}]


@pytest.mark.parametrize("bad, column", [
    ({"messages": None}, "messages"),
    ({"text": "red cat"}, "messages"),  # a row of another format in a messages file
])
def test_null_conversation_column_names_the_line(tmp_path, bad, column):
    rows = chat_rows(3) + [bad]
    with pytest.raises(MISTAKES, match=rf"train.jsonl: line 4: column '{column}' is missing or null"):
        _task(tmp_path, rows, _tok())


def test_null_sharegpt_and_alpaca_fields_name_the_line(tmp_path):
    conv = {"conversations": [{"from": "human", "value": "red"}, {"from": "gpt", "value": "cat"}]}
    with pytest.raises(MISTAKES, match=r"line 3: column 'conversations' is missing or null"):
        _task(tmp_path, [conv, conv, {"conversations": None}], _tok())
    alp = {"instruction": "name a pet", "input": "", "output": "cat"}
    with pytest.raises(MISTAKES, match=r"line 2: column 'instruction' is missing or null"):
        _task(tmp_path, [alp, {"instruction": None, "input": "", "output": "x"}], _tok())


def test_conversational_prompt_completion_trains_the_completion_only(tmp_path):
    tok = _tok()
    history = [{"role": "user", "content": "red"}, {"role": "assistant", "content": "cat"},
               {"role": "user", "content": "blue"}]
    completion = [{"role": "assistant", "content": "dog"}, {"role": "user", "content": "sun"},
                  {"role": "assistant", "content": "moon"}]
    _, ds = _task(tmp_path, [{"prompt": history, "completion": completion}] * 2, tok)
    assert "".join(_trained(tok, ds[0])).replace(" ", "") == "dog<|im_end|>moon<|im_end|>"
    # a missing completion is an error, not a loss on the assistant turn of the prompt
    rows = [{"prompt": history, "completion": completion}, {"prompt": history, "completion": None}]
    with pytest.raises(MISTAKES, match=r"line 2: column 'completion' is missing or null"):
        _task(tmp_path, rows, tok)


def test_conversational_prompt_with_a_text_completion_is_refused(tmp_path):
    rows = [{"prompt": USER_ASSISTANT[:1], "completion": "cat"}] * 2
    with pytest.raises(MISTAKES, match=r"line 1: a conversational prompt .* needs a conversational completion"):
        _task(tmp_path, rows, _tok())


def test_answer_token_straddling_the_generation_prompt_is_trained(tmp_path):
    # the generation prompt ends in a space, so a byte-level BPE writes the answer's first word as " cat",
    # a token that starts inside the prompt's text
    template = ("{% for m in messages %}{% if m['role'] == 'user' %}User: {{ m['content'] }}\n"
                "{% else %}Assistant: {{ m['content'] }}\n{% endif %}{% endfor %}"
                "{% if add_generation_prompt %}Assistant: {% endif %}")
    tok = _tok(template, vocab=1000)
    assert tok.tokenize("Assistant: cat")[-1] == "Ġcat"
    rows = [{"messages": USER_ASSISTANT + [{"role": "user", "content": "blue"},
                                           {"role": "assistant", "content": "dog bird"}]}] * 2
    _, ds = _task(tmp_path, rows, tok)
    assert [t.strip() for t in _trained(tok, ds[0])] == ["cat", "dog", "bird"]


def test_template_that_renders_no_answer_text_is_an_error_with_its_reason(tmp_path):
    template = ("{% for m in messages %}{% if m['role'] == 'user' %}<|im_start|>user\n{{ m['content'] }}<|im_end|>\n"
                "{% else %}<|im_start|>assistant\n{% endif %}{% endfor %}"
                "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")  # the answers themselves left out
    with pytest.raises(MISTAKES, match="2 of 2 rows have no trained tokens.*chat template that renders no text"):
        _task(tmp_path, [{"messages": USER_ASSISTANT}] * 2, _tok(template))


def test_template_that_refuses_a_conversation_names_the_line(tmp_path):
    template = ("{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
                "{% endif %}" + CHATML_TEMPLATE)
    rows = [{"messages": USER_ASSISTANT}, {"messages": [{"role": "system", "content": "x"}] + USER_ASSISTANT}]
    with pytest.raises(MISTAKES, match=r"line 2: the chat template refused this conversation: System role"):
        _task(tmp_path, rows, _tok(template))


def test_loss_on_all_takes_a_template_without_the_prefix_property(tmp_path):
    tok = _tok("{{ messages|length }}{% for m in messages %}{{ m['content'] }}{% endfor %}")
    with pytest.raises(MISTAKES, match=r"line 1: the chat template does not render"):
        _task(tmp_path, chat_rows(2), tok)
    _, ds = _task(tmp_path, chat_rows(2), tok, sft={"loss_on": "all"})
    assert all(lab != -100 for lab in ds[0]["labels"][1:])


def test_predict_prompt_of_a_multi_turn_conversation_ends_with_its_last_turn(tmp_path):
    tok = _tok()
    rows = [{"messages": USER_ASSISTANT + [{"role": "user", "content": "blue"}]}] * 2
    _, ds = _task(tmp_path, rows, tok, split="predict")
    assert ds[0]["prompt"].endswith("<|im_start|>user\nblue<|im_end|>\n<|im_start|>assistant\n")
    assert ds[0]["reference"] is None


# ------------------------------------------------------------------ model types and packing / attention

TINY_OPT = {"model_type": "opt", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4,
            "ffn_dim": 64, "word_embed_proj_dim": 32, "max_position_embeddings": 256}
TINY_BLOOM = {"model_type": "bloom", "hidden_size": 32, "n_layer": 1, "n_head": 4}


def test_a_model_whose_attention_ignores_position_restarts_really_leaks():
    import datasets
    import torch
    import torch.nn.functional as F
    from transformers import AutoConfig, AutoModelForCausalLM

    from collators.sft import PackedCollator, PaddingCollator, pack_documents

    fields = {k: v for k, v in TINY_OPT.items() if k != "model_type"}
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model("opt", vocab_size=100, **fields)).eval()
    docs = [{"input_ids": ids, "labels": [-100] + ids[1:]} for ids in ([5, 9, 13, 21, 7], [40, 41, 8, 30])]

    def nll(batch):
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}, use_cache=False).logits
        return F.cross_entropy(logits[0, :-1], batch["labels"][0, 1:], ignore_index=-100, reduction="sum")

    with torch.no_grad():
        packed = nll(PackedCollator()(list(pack_documents(datasets.Dataset.from_list(docs), 64))))
        alone = sum(nll(PaddingCollator(0)([d])) for d in docs)
    assert abs(float(packed - alone)) > 1e-3  # so OPT is in LEAKY_MODEL_TYPES


def test_packing_off_by_default_and_refused_for_leaky_model_types(tmp_path):
    from suites.config.model_type import model_type

    def cfg(**sections):
        return config.from_dict(sft_config(tmp_path, **sections))

    for fc in (TINY_OPT, TINY_BLOOM):
        assert cfg(model={"from_config": dict(fc)}).sft.packing is False
        with pytest.raises(MISTAKES, match=f"model type {fc['model_type']} would let packed documents"):
            cfg(model={"from_config": dict(fc)}, sft={"packing": True})
    assert cfg().sft.packing is True  # Llama reads the restarts
    # a local model directory, and an adapter directory naming it as its base
    import json

    base, adapter = tmp_path / "base", tmp_path / "adapter"
    base.mkdir(), adapter.mkdir()
    (base / "config.json").write_text(json.dumps({"model_type": "opt"}))
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(base)}))
    for path in (base, adapter):
        raw = sft_config(tmp_path)
        raw["model"], raw["tokenizer"] = {"name_or_path": str(path)}, {}
        assert model_type(config.from_dict(raw)) == "opt"


def test_default_attention_is_one_the_model_class_implements(tmp_path, monkeypatch):
    from suites import sft_speed

    llama = config.from_dict(sft_config(tmp_path))
    bloom = config.from_dict(sft_config(tmp_path, model={"from_config": dict(TINY_BLOOM)}))
    assert sft_speed.attention_kwargs(llama) == {"attn_implementation": "sdpa"}
    assert sft_speed.attention_kwargs(bloom) == {}  # eager only: transformers would refuse sdpa
    monkeypatch.setattr(sft_speed, "_cuda", lambda: True)
    monkeypatch.setattr(sft_speed, "_capability", lambda: (8, 0))
    monkeypatch.setattr(sft_speed, "_installed", lambda m: m in ("flash_attn", "torch.nn.attention.flex_attention"))
    assert sft_speed.attention_kwargs(llama) == {"attn_implementation": "flash_attention_2"}
    assert sft_speed.attention_kwargs(bloom) == {}
    assert sft_speed.default_attention() == "flash_attention_2"


def test_an_eager_only_model_trains_from_the_command_line(tmp_path):
    import json
    import os

    from suites.run.cli import run
    from tests.conftest import write_yaml

    raw = sft_config(tmp_path, model={"from_config": dict(TINY_BLOOM)})
    raw["train"]["max_steps"] = 1
    assert run(["train", write_yaml(tmp_path / "cfg.yaml", raw), "--quiet"]) == 0
    with open(os.path.join(raw["output_dir"], "results.json")) as fh:
        assert "eval_loss" in json.load(fh)
