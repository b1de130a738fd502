"""`trainsuite export`: safetensors that stop where training taught, GGUF that transformers reads back with
the same logits, ONNX that onnxruntime runs to the same predictions as `trainsuite predict`."""

from __future__ import annotations

import json
import os
import random

import numpy as np
import pytest
import torch

from suites.run.cli import run
from tasks.instruction import CHATML_TEMPLATE
from tasks.tokenizer import CHAT_LIKE, train_tokenizer
from tests.conftest import write_yaml
from tests.sft_common import TINY_LLAMA, WORDS, chat_rows

SHAPE = {k: v for k, v in TINY_LLAMA.items() if k != "model_type"}


@pytest.fixture(scope="module")
def chat_tokenizer():
    """A byte-level BPE trained here, with ChatML specials and template (what an SFT run from scratch saves)."""
    texts = [m["content"] for row in chat_rows(64) for m in row["messages"]] + [" ".join(WORDS)] * 3
    tok = train_tokenizer(texts, 300, CHAT_LIKE)
    tok.chat_template = CHATML_TEMPLATE
    return tok


def save_run(path, model, tokenizer, chat=True):
    """A run directory as an SFT run leaves it (the model, its tokenizer, sft_format.json)."""
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    with open(os.path.join(path, "sft_format.json"), "w") as fh:
        json.dump({"format": "messages", "chat_template": chat}, fh)
    return str(path)


def causal_lm(model_type, tokenizer, seed=0, **fields):
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(seed)
    config = AutoConfig.for_model(model_type, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                                  eos_token_id=tokenizer.eos_token_id, bos_token_id=None, **{**SHAPE, **fields})
    return AutoModelForCausalLM.from_config(config).eval()


def ends_every_turn(model, tokenizer):
    """Surgery standing in for training: every position's next token is <|im_end|>. The blocks add nothing
    to the residual stream, every embedding is positive in dimension 0, and only <|im_end|> reads it."""
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.embed_tokens.weight[:, 0] = 1.0
        model.lm_head.weight.zero_()
        model.lm_head.weight[end, 0] = 10.0
    return end


def test_safetensors_export_stops_at_the_end_of_turn(tmp_path, chat_tokenizer):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = causal_lm("llama", chat_tokenizer)
    end = ends_every_turn(model, chat_tokenizer)
    run_dir = save_run(tmp_path / "run", model, chat_tokenizer)
    out = str(tmp_path / "export")
    assert run(["export", run_dir, "--format", "safetensors", "--output", out]) == 0

    exported = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert exported.dtype == torch.bfloat16  # the default
    assert tok.chat_template == CHATML_TEMPLATE
    gen = json.load(open(os.path.join(out, "generation_config.json")))
    assert gen["eos_token_id"] == [chat_tokenizer.eos_token_id, end]
    prompt = tok.apply_chat_template([{"role": "user", "content": "repeat: red cat"}], tokenize=False,
                                     add_generation_prompt=True)
    ids = tok(prompt, return_tensors="pt", add_special_tokens=False)
    new = exported.generate(**ids, max_new_tokens=8, do_sample=False)[0, ids["input_ids"].shape[1]:].tolist()
    assert new == [end]  # plain transformers, no stop tokens passed: generation_config says where to stop
    # the run's own generation_config (the base's eos only) would have run on to max_new_tokens
    plain = AutoModelForCausalLM.from_pretrained(run_dir)
    assert len(plain.generate(**ids, max_new_tokens=8, do_sample=False)[0]) == ids["input_ids"].shape[1] + 8
    assert os.path.isfile(os.path.join(out, "sft_format.json"))


def test_safetensors_export_of_a_lora_run_is_merged_in_the_dtype_asked(tmp_path, chat_tokenizer):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base_dir = save_run(tmp_path / "base", causal_lm("llama", chat_tokenizer), chat_tokenizer)
    lora = get_peft_model(AutoModelForCausalLM.from_pretrained(base_dir),
                          LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)  # a trained adapter is not zero
    run_dir = save_run(tmp_path / "run", lora, chat_tokenizer)
    out = str(tmp_path / "export")
    assert run(["export", run_dir, "--format", "safetensors", "--output", out, "--dtype", "fp32"]) == 0
    assert not os.path.isfile(os.path.join(out, "adapter_config.json"))
    exported = AutoModelForCausalLM.from_pretrained(out)
    assert exported.dtype == torch.float32
    ids = torch.tensor([[5, 9, 13, 21, 34]])
    with torch.no_grad():
        torch.testing.assert_close(exported(ids).logits, lora.eval()(ids).logits, rtol=0, atol=1e-5)


HELD_OUT = ("<|im_start|>user\nrepeat: sun moon tree<|im_end|>\n<|im_start|>assistant\nsun moon tree<|im_end|>\n"
            "the river and the stone by the fire; a blue bird, a green tree. 12 cats & 3 dogs!")


def as_stored(p, quant):
    """What the file keeps of a weight: vectors as f32, matrices as f16 or q8_0 (blocks of 32)."""
    import gguf

    if p.ndim == 1:
        return p
    if quant == "f16":
        return p.half().float()
    kind = gguf.GGMLQuantizationType.Q8_0
    return torch.from_numpy(gguf.quants.dequantize(gguf.quants.quantize(p.numpy(), kind), kind))


def gguf_round_trip(tmp_path, tokenizer, model, quant):
    """(the run's logits, those of transformers' model read back from the export, those of the run's model
    with its weights rounded as the file stores them, the mask of real tokens) on a fixed batch."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_type = model.config.model_type
    run_dir = save_run(tmp_path / f"run-{model_type}", model, tokenizer)
    out = str(tmp_path / f"gguf-{model_type}-{quant}")
    assert run(["export", run_dir, "--format", "gguf", "--quant", quant, "--output", out]) == 0
    name = f"model-{quant}.gguf"
    assert sorted(os.listdir(out)) == ["Modelfile", name]
    with open(os.path.join(out, "Modelfile")) as fh:
        ollama = fh.read()
    assert ollama.startswith(f"FROM ./{name}\n") and "<|im_start|>{{ .Role }}" in ollama
    assert 'PARAMETER stop "<|im_end|>"' in ollama and 'PARAMETER stop "<|endoftext|>"' in ollama
    back = AutoModelForCausalLM.from_pretrained(out, gguf_file=name, dtype=torch.float32).eval()
    back_tok = AutoTokenizer.from_pretrained(out, gguf_file=name)
    texts = [HELD_OUT, "repeat: red green blue cat dog"]
    assert [back_tok(t)["input_ids"] for t in texts] == [tokenizer(t)["input_ids"] for t in texts]
    assert "endgeneration" not in back_tok.chat_template  # llama.cpp's Jinja has no {% generation %}
    chat = chat_rows(3, seed=5)[2]["messages"]
    assert back_tok.apply_chat_template(chat, tokenize=False) == tokenizer.apply_chat_template(chat, tokenize=False)
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        ours, theirs = model(**batch).logits, back(**batch).logits
        for p in model.parameters():
            p.copy_(as_stored(p, quant))
        rounded = model(**batch).logits
    return ours, theirs, rounded, batch["attention_mask"].bool()


@pytest.mark.parametrize("model_type,fields", [("llama", {}), ("mistral", {"sliding_window": None}),
                                               ("qwen2", {"tie_word_embeddings": True})])
def test_gguf_f16_reads_back_with_the_same_logits(tmp_path, chat_tokenizer, model_type, fields):
    # a wide initialization: logits of a few units, so that a misplaced weight shows
    model = causal_lm(model_type, chat_tokenizer, initializer_range=0.3, **fields)
    ours, back, rounded, mask = gguf_round_trip(tmp_path, chat_tokenizer, model, "f16")
    assert ours[mask].abs().max() > 3
    # the file holds exactly the f16-rounded weights: measured 0.0 against them, 0.017 (llama) .. 0.037
    # (qwen2) against the fp32 run for logits up to 7
    assert (rounded - back)[mask].abs().max() < 1e-4
    assert (ours - back)[mask].abs().max() < 0.1


def test_gguf_q8_0_keeps_the_top_token(tmp_path, chat_tokenizer):
    """On a model trained a little (a random one has near ties everywhere), q8_0 keeps the greedy choice on
    held-out text; and the file holds exactly gguf's q8_0 rounding of each matrix."""
    model = causal_lm("llama", chat_tokenizer)
    rows = [chat_tokenizer.apply_chat_template(r["messages"], tokenize=False) for r in chat_rows(64, seed=3)]
    enc = chat_tokenizer(rows, return_tensors="pt", padding=True)
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(40):
        model(**enc, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()
    ours, back, rounded, mask = gguf_round_trip(tmp_path, chat_tokenizer, model.eval(), "q8_0")
    assert (rounded - back)[mask].abs().max() < 1e-4
    agree = (ours.argmax(-1) == back.argmax(-1))[mask].float().mean().item()
    assert agree >= 0.99


def render_ollama(modelfile: str, messages: list[dict]) -> str:
    """The prompt Ollama builds from a Modelfile for a chat: its SYSTEM goes in front of a conversation with
    no system message (ollama's server/routes.go), then the TEMPLATE is run. A small Go-template reader for
    the actions our TEMPLATE uses: {{ range .Messages }} ... {{ end }}, {{ .Field }}, and the trim markers
    ({{- drops the whitespace before the action, -}} the whitespace after)."""
    import re

    template = re.search(r'^TEMPLATE """(.*?)"""$', modelfile, re.S | re.M).group(1)
    system = re.search(r'^SYSTEM """(.*?)"""$', modelfile, re.S | re.M)
    if system and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": system.group(1)}, *messages]
    parts = re.split(r"(\{\{.*?\}\})", template)
    for i, part in enumerate(parts):
        if part.startswith("{{-") and i:
            parts[i - 1] = parts[i - 1].rstrip()
        if part.endswith("-}}") and i + 1 < len(parts):
            parts[i + 1] = parts[i + 1].lstrip()
    actions = [p.strip("{}-").strip() if p.startswith("{{") else None for p in parts]

    def run(i, dot):  # renders from parts[i] to the matching {{ end }}: (text, index of that end)
        out = []
        while i < len(parts):
            action = actions[i]
            if action is None:
                out.append(parts[i])
            elif action == "end":
                return "".join(out), i
            elif action == "range .Messages":
                for message in dot["Messages"]:
                    body, end = run(i + 1, {k.capitalize(): v for k, v in message.items()})
                    out.append(body)
                i = end
            elif action.startswith("."):
                out.append(dot[action[1:]])
            else:
                raise AssertionError(f"a Go template action this reader does not know: {action}")
            i += 1
        return "".join(out), i

    return run(0, {"Messages": messages})[0]


SMOLLM2_LIKE_TEMPLATE = (  # SmolLM2-Instruct's: ChatML with a default system prompt
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


@pytest.mark.parametrize("template", ["chatml", "default_system"])
def test_modelfile_template_renders_as_the_tokenizer_chat_template(chat_tokenizer, template):
    """The Modelfile's TEMPLATE (and SYSTEM, for a template that inserts a default system prompt), run the
    way Ollama runs it, gives the text the tokenizer's chat template gives."""
    import copy

    from suites.export.gguf_file import modelfile

    tok = copy.deepcopy(chat_tokenizer)
    tok.chat_template = CHATML_TEMPLATE if template == "chatml" else SMOLLM2_LIKE_TEMPLATE
    text = modelfile("model-f16.gguf", tok)
    assert ("SYSTEM" in text) == (template == "default_system")
    chats = [[{"role": "user", "content": "repeat: red cat"}],
             [{"role": "user", "content": "repeat: sun"}, {"role": "assistant", "content": "sun"},
              {"role": "user", "content": "and moon?"}],
             [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]]
    for chat in chats:
        assert render_ollama(text, chat) == tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)


def test_gguf_query_and_key_rows_are_laid_out_as_transformers_reads_them_back():
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    from suites.export.gguf_file import permute_rotary_rows

    w = np.arange(16 * 3, dtype=np.float32).reshape(16, 3)  # 2 heads of 8 rows
    permuted = permute_rotary_rows(w, 2)
    assert permuted[:4, 0].tolist() == [0, 12, 3, 15]  # head 0: rows 0, 4, 1, 5 (three columns each)
    reader = LlamaTensorProcessor({"num_attention_heads": 2, "num_key_value_heads": 2})
    assert (reader.process(permuted, "blk.0.attn_q.weight").weights == w).all()


def test_gguf_chat_template_renders_the_same_without_generation_markers():
    from transformers.utils.chat_template_utils import render_jinja_template

    from suites.export.gguf_file import portable_template

    marked = "{%- for m in messages -%}{%- generation -%} {{ m['content'] }} {% endgeneration %}|{%- endfor -%}"
    chat = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    for template in (marked, CHATML_TEMPLATE):
        plain = portable_template(template)
        assert "endgeneration" not in plain and "{%- generation" not in plain and "{% generation" not in plain
        assert render_jinja_template([chat], chat_template=plain)[0] == \
            render_jinja_template([chat], chat_template=template)[0]


def test_gguf_names_the_pre_tokenizer_as_llama_cpp_does(chat_tokenizer):
    """llama.cpp splits text before the merges by the rule tokenizer.ggml.pre names; a rule it may not know is
    refused rather than written as GPT-2's."""
    import copy

    from tokenizers import Regex, pre_tokenizers
    from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_PRE_TOKENIZER_SPLITS

    from suites.errors import UserError
    from suites.export.gguf_file import pre_tokenizer

    assert pre_tokenizer(chat_tokenizer) == "gpt-2"
    tok = copy.deepcopy(chat_tokenizer)
    splits = GGUF_PRE_TOKENIZER_SPLITS
    for name, regex in (("qwen2", splits["qwen2"]), ("llama-bpe", splits["llama3"]), (None, r"\p{L}+|\s+")):
        tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(regex), behavior="isolated"),
             pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        if name:
            assert pre_tokenizer(tok) == name
        else:
            with pytest.raises(UserError, match="no name for"):
                pre_tokenizer(tok)


def test_gguf_refuses_what_it_cannot_write_before_writing(tmp_path, chat_tokenizer, capsys):
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=len(chat_tokenizer),
                                      bos_token_id=None, eos_token_id=chat_tokenizer.eos_token_id))
    run_dir = save_run(tmp_path / "gpt2", gpt2, chat_tokenizer)
    out = tmp_path / "out"
    assert run(["export", run_dir, "--format", "gguf", "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: export: --format gguf") and "gpt2" in err
    # a Llama with a WordPiece vocabulary: llama.cpp's byte-level reader would split its text differently
    wordpiece = train_tokenizer(["repeat red cat"] * 3, 60, CHAT_LIKE, algorithm="wordpiece")
    run_dir = save_run(tmp_path / "wp", causal_lm("llama", wordpiece), wordpiece)
    assert run(["export", run_dir, "--format", "gguf", "--output", str(out)]) == 2
    assert "byte-level BPE" in capsys.readouterr().err
    assert not out.exists() and not [n for n in os.listdir(tmp_path) if ".partial-" in n]


def test_export_refuses_a_non_empty_output_unless_forced(tmp_path, chat_tokenizer, capsys):
    run_dir = save_run(tmp_path / "run", causal_lm("llama", chat_tokenizer), chat_tokenizer)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("another export")
    assert run(["export", run_dir, "--format", "safetensors", "--output", str(out)]) == 2
    assert "exists and is not empty; pass --force" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "another export"
    assert run(["export", run_dir, "--format", "safetensors", "--output", str(out), "--quant", "q8_0"]) == 2
    assert "--quant is for --format gguf" in capsys.readouterr().err
    assert run(["export", run_dir, "--format", "onnx", "--output", str(out), "--force"]) == 2
    assert "onnx takes a classification or seq2seq model" in capsys.readouterr().err
    assert (out / "keep.txt").exists()
    assert run(["export", run_dir, "--format", "safetensors", "--output", str(out), "--force"]) == 0
    assert not (out / "keep.txt").exists() and (out / "model.safetensors").is_file()


def test_a_failed_export_leaves_nothing(tmp_path):
    from suites.run.merge import staged

    with pytest.raises(RuntimeError), staged(str(tmp_path / "out")) as tmp:
        open(os.path.join(tmp, "model-f16.gguf"), "w").write("half a file")
        raise RuntimeError("disk full")
    assert os.listdir(tmp_path) == []


def test_onnx_export_predicts_as_trainsuite_predict(tmp_path, cls_config):
    import onnxruntime
    from transformers import AutoTokenizer

    cls_config["train"].update(num_train_epochs=6, per_device_train_batch_size=8, learning_rate=1e-2)
    path = write_yaml(tmp_path / "c.yaml", cls_config)
    run_dir, eval_file = cls_config["output_dir"], cls_config["data"]["eval"]
    assert run(["train", path, "--quiet"]) == 0
    preds = str(tmp_path / "preds.jsonl")
    assert run(["predict", path, f"model.name_or_path={run_dir}", "--input", eval_file, "--output", preds,
                "--quiet"]) == 0
    out = str(tmp_path / "onnx")
    assert run(["export", run_dir, "--format", "onnx", "--output", out]) == 0

    expected = [json.loads(line) for line in open(preds)]
    labels = json.load(open(os.path.join(out, "label_map.json")))["labels"]
    tok = AutoTokenizer.from_pretrained(out)
    session = onnxruntime.InferenceSession(os.path.join(out, "model.onnx"), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    texts = [json.loads(line)["text"] for line in open(eval_file)]
    order = list(range(len(texts)))
    random.Random(0).shuffle(order)
    for batch in (order[:1], order[1:7], order[7:]):  # dynamic batch size and length
        enc = tok([texts[i] for i in batch], padding=True, truncation=True, max_length=32, return_tensors="np")
        logits = session.run(["logits"], {n: enc[n].astype(np.int64) for n in names})[0]
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        for i, p in zip(batch, probs):
            assert labels[int(p.argmax())] == expected[i]["label"]
            for j, label in enumerate(labels):
                assert abs(p[j] - expected[i]["probabilities"][label]) < 1e-4
    assert len({e["label"] for e in expected}) == 2  # a trained model: both labels predicted


def test_onnx_export_of_a_lora_classifier_folds_in_the_adapter_and_its_head(tmp_path):
    import onnxruntime
    from peft import LoraConfig, get_peft_model
    from transformers import BertConfig, BertForSequenceClassification

    from tasks.tokenizer import BERT_LIKE
    from tests.conftest import TINY_BERT, sentiment_rows

    texts = [r["text"] for r in sentiment_rows(40)]
    tok = train_tokenizer(texts, 120, BERT_LIKE, algorithm="wordpiece")
    fields = {k: v for k, v in TINY_BERT.items() if k != "model_type"}
    torch.manual_seed(0)
    base_dir = str(tmp_path / "base")
    BertForSequenceClassification(BertConfig(vocab_size=len(tok), **fields)).save_pretrained(base_dir)
    labels = ["neg", "neutral", "pos"]  # the base's head has 2 outputs: the run's has 3
    head = {"num_labels": 3, "id2label": dict(enumerate(labels)), "label2id": {n: i for i, n in enumerate(labels)}}
    base = BertForSequenceClassification.from_pretrained(base_dir, ignore_mismatched_sizes=True, **head)
    model = get_peft_model(base, LoraConfig(r=4, target_modules=["query", "value"], task_type="SEQ_CLS"))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name or "classifier" in name:
                p.normal_(0, 0.5)
    run_dir = str(tmp_path / "run")
    model.save_pretrained(run_dir)
    tok.save_pretrained(run_dir)
    with open(os.path.join(run_dir, "label_map.json"), "w") as fh:
        json.dump({"problem_type": "single_label_classification", "labels": labels}, fh)
    write_yaml(os.path.join(run_dir, "run_config.yaml"), {"task": "classification"})
    out = str(tmp_path / "onnx")
    assert run(["export", run_dir, "--format", "onnx", "--output", out]) == 0

    enc = tok(texts[:5], padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = model.eval()(**enc).logits.numpy()
    session = onnxruntime.InferenceSession(os.path.join(out, "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {i.name: enc[i.name].numpy() for i in session.get_inputs()})[0]
    assert got.shape == (5, 3) and np.abs(got - expected).max() < 1e-4


@pytest.mark.parametrize("family", ["classification", "seq2seq"])
def test_safetensors_export_of_the_other_families(tmp_path, family):
    from transformers import (AutoModelForSeq2SeqLM, AutoModelForSequenceClassification, BertConfig,
                              BertForSequenceClassification, T5Config, T5ForConditionalGeneration)

    from tasks.tokenizer import BERT_LIKE, T5_LIKE
    from tests.conftest import TINY_BERT, sentiment_rows

    texts = [r["text"] for r in sentiment_rows(40)]
    torch.manual_seed(0)
    if family == "classification":
        tok = train_tokenizer(texts, 120, BERT_LIKE, algorithm="wordpiece")
        fields = {k: v for k, v in TINY_BERT.items() if k != "model_type"}
        model, auto = BertForSequenceClassification(BertConfig(vocab_size=len(tok), **fields)), \
            AutoModelForSequenceClassification
    else:
        tok = train_tokenizer(texts, 120, T5_LIKE, algorithm="unigram")
        model = T5ForConditionalGeneration(T5Config(vocab_size=len(tok), d_model=32, d_ff=64, d_kv=8, num_layers=1,
                                                    num_heads=2, decoder_start_token_id=tok.pad_token_id))
        auto = AutoModelForSeq2SeqLM
    run_dir = str(tmp_path / "run")
    model.save_pretrained(run_dir)
    tok.save_pretrained(run_dir)
    write_yaml(os.path.join(run_dir, "run_config.yaml"), {"task": family})
    out = str(tmp_path / "export")
    assert run(["export", run_dir, "--format", "safetensors", "--output", out, "--dtype", "fp16"]) == 0
    exported = auto.from_pretrained(out)
    assert exported.dtype == torch.float16 and type(exported) is type(model)
    enc = tok(texts[:3], padding=True, return_tensors="pt")
    if family == "seq2seq":
        enc["decoder_input_ids"] = torch.zeros((3, 2), dtype=torch.long)
    with torch.no_grad():
        torch.testing.assert_close(exported.float()(**enc).logits, model.eval()(**enc).logits, rtol=0, atol=1e-2)


def test_onnx_export_of_a_seq2seq_run_decodes_as_trainsuite_predict(tmp_path):
    """A tiny T5 run (one step from a wide random init: its greedy outputs differ from row to row, where a
    briefly trained toy model says the same few words): onnxruntime's greedy decode of the exported encoder
    and decoder gives `trainsuite predict`'s (greedy) predictions, in batches of several sizes and lengths."""
    import onnxruntime
    from transformers import AutoTokenizer

    from suites.export.onnx_seq2seq import DECODER, ENCODER, greedy
    from tests.test_seq2seq import TINY_T5, base_config, parallel_files, toy_pairs
    from tests.test_seq2seq import write_yaml as write_cfg

    pairs = toy_pairs(120)
    cfg = base_config(tmp_path, parallel_files(tmp_path, pairs[:100], "train"),
                      parallel_files(tmp_path, pairs[100:], "val"), model={**TINY_T5, "initializer_factor": 8.0},
                      train={"max_steps": 1})
    path = write_cfg(tmp_path / "run.yaml", cfg)
    assert run(["train", path, "--quiet"]) == 0
    sources = [s for s, _ in pairs[100:]]
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps({"source": s}) + "\n" for s in sources))
    preds = tmp_path / "preds.jsonl"
    assert run(["predict", path, "--input", str(inp), "--output", str(preds), "--quiet"]) == 0
    expected = [json.loads(line)["prediction"] for line in open(preds)]
    out = str(tmp_path / "onnx")
    assert run(["export", cfg["output_dir"], "--format", "onnx", "--output", out]) == 0
    assert {ENCODER, DECODER, "generation_config.json"} <= set(os.listdir(out))

    tok = AutoTokenizer.from_pretrained(out)
    gen = json.load(open(os.path.join(out, "generation_config.json")))
    enc, dec = (onnxruntime.InferenceSession(os.path.join(out, f), providers=["CPUExecutionProvider"])
                for f in (ENCODER, DECODER))
    got = []
    for batch in (sources[:1], sources[1:8], sources[8:]):
        x = tok(batch, padding=True, truncation=True, max_length=32, return_tensors="np")
        rows = greedy(enc, dec, x["input_ids"].astype(np.int64), x["attention_mask"].astype(np.int64),
                      gen["decoder_start_token_id"], [gen["eos_token_id"]], cfg["generation"]["max_new_tokens"])
        got += [t.strip() for t in tok.batch_decode(rows, skip_special_tokens=True)]
    assert got == expected and len(set(expected)) > 3  # the same text, and not one reply for every row
