"""`trainsuite serve`: the real `openai` client against the server on loopback, the batcher on its own,
/v1/classify against `trainsuite predict`, and the command line's mistakes."""

from __future__ import annotations

import json
import threading

import httpx
import pytest

openai = pytest.importorskip("openai")
uvicorn = pytest.importorskip("uvicorn")

from suites.run.cli import run  # noqa: E402
from tests.conftest import sentiment_rows, write_jsonl, write_yaml  # noqa: E402
from tests.serve_common import Running  # noqa: E402
from tests.sft_common import TINY_LLAMA, sft_config  # noqa: E402

KEY = "test-key-123"
PROMPTS = ["red cat", "blue sun moon tree river", "dog", "green bird bird sun stone fire", "fire", "moon moon",
           "tree river stone", "cat dog bird"]


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory):
    """A tiny SFT run on chat rows. One step from a wide random init: its greedy replies are long and differ
    from prompt to prompt (a trained toy model soon says the same few words), so they show any mix-up."""
    tmp = tmp_path_factory.mktemp("sft")
    cfg = sft_config(tmp, model={"from_config": {**TINY_LLAMA, "initializer_range": 0.2}},
                     train={"max_steps": 1, "learning_rate": 1e-5})
    cfg["data"]["prepared_cache"] = False  # a module fixture: no per-test cache folder yet
    assert run(["train", write_yaml(tmp / "c.yaml", cfg), "--quiet"]) == 0
    return cfg["output_dir"]


@pytest.fixture(scope="module")
def server(sft_run):
    from suites.serve.server import prepare

    served, batcher, app = prepare(sft_run, api_key=KEY, max_batch=8)
    running = Running(app)
    yield running, served, batcher
    running.stop()
    batcher.close()


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server[0].url + "/v1", api_key=KEY, max_retries=0)


def chat(client, words, **kw):
    return client.chat.completions.create(model="run", messages=[{"role": "user", "content": "repeat: " + words}],
                                          **{"max_tokens": 12, **kw})


def test_models_lists_the_run(client):
    models = client.models.list()
    assert [m.id for m in models.data] == ["run"]


def test_chat_answers_as_predict_generates(client, server):
    from suites.config.schema import GenerationConfig
    from suites.sft import generate

    _, served, _ = server
    reply = chat(client, PROMPTS[1])
    prompt = served.tokenizer.apply_chat_template([{"role": "user", "content": "repeat: " + PROMPTS[1]}],
                                                  add_generation_prompt=True, tokenize=False)
    [(text, tokens, _)] = generate(served.model, served.tokenizer, [prompt], GenerationConfig(max_new_tokens=12), 1)
    choice = reply.choices[0]
    assert (choice.message.role, choice.message.content) == ("assistant", text) and text
    assert choice.finish_reason == "length" and reply.usage.completion_tokens == tokens == 12
    assert reply.usage.prompt_tokens == len(served.tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert reply.object == "chat.completion" and reply.model == "run" and reply.id.startswith("chatcmpl-")
    sampled = chat(client, PROMPTS[1], temperature=0.9, top_p=0.9).choices[0]
    assert isinstance(sampled.message.content, str) and sampled.finish_reason in ("stop", "length")


def test_stream_chunks_add_up_to_the_reply(client):
    whole = chat(client, PROMPTS[3]).choices[0].message.content
    chunks = list(chat(client, PROMPTS[3], stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole and len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage.completion_tokens == 12 and chunks[0].object == "chat.completion.chunk"
    plain = list(client.completions.create(model="run", prompt="repeat: dog", max_tokens=8, stream=True))
    assert "".join(c.choices[0].text for c in plain) == \
        client.completions.create(model="run", prompt="repeat: dog", max_tokens=8).choices[0].text


def test_a_stop_string_ends_the_reply_before_it(client):
    whole = client.completions.create(model="run", prompt="repeat: cat", max_tokens=24).choices[0].text
    stop = next(ch for ch in whole[2:] if ch.isprintable() and not ch.isspace() and ch != "\ufffd")  # not first
    cut = client.completions.create(model="run", prompt="repeat: cat", max_tokens=24, stop=[stop]).choices[0]
    assert (cut.text, cut.finish_reason) == (whole[:whole.index(stop)], "stop")


def test_concurrent_requests_are_batched_and_answered_as_alone(client, server):
    _, _, batcher = server
    alone = {w: chat(client, w, max_tokens=16).choices[0].message.content for w in PROMPTS}  # one at a time
    before = sum(n for size, n in batcher.batch_sizes.items() if size > 1)
    start, answers = threading.Barrier(len(PROMPTS)), {}

    def ask(words):
        start.wait()
        answers[words] = chat(client, words, max_tokens=16).choices[0].message.content

    threads = [threading.Thread(target=ask, args=(w,)) for w in PROMPTS]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == alone
    stats = httpx.get(server[0].url + "/stats", headers={"Authorization": f"Bearer {KEY}"}).json()
    assert sum(n for size, n in stats["batch_sizes"].items() if int(size) > 1) > before  # some batch > 1


def test_batched_greedy_rows_equal_each_alone(server):
    """Deterministic: jobs queued before the worker starts form one batch (different lengths, limits, a stop)."""
    from suites.generation import generation_settings
    from suites.serve.batcher import Batcher, Job

    _, served, _ = server
    tok = served.tokenizer
    ids = [tok(tok.apply_chat_template([{"role": "user", "content": w}], add_generation_prompt=True,
                                       tokenize=False), add_special_tokens=False)["input_ids"] for w in PROMPTS[:5]]
    limits, stops = [10, 3, 14, 7, 10], [(), (), (), (), ("e",)]

    def generate(rows):
        batcher = Batcher(served.model, tok, served.stop_ids, generation_settings(served.cfg.generation), 8)
        outs = [[] for _ in rows]
        for out, i in zip(outs, rows):
            batcher.submit(Job(ids[i], limits[i], None, stops[i], out.append))
        batcher.start().close()
        return outs, dict(batcher.batch_sizes)

    together, sizes = generate(range(5))
    assert sizes == {5: 1}
    assert together == [generate([i])[0][0] for i in range(5)]
    assert [o[-1][2] for o in together[:4]] == limits[:4]  # each row stopped at its own max_tokens


def test_bad_requests_get_openai_errors(client, server):
    with pytest.raises(openai.BadRequestError) as err:
        chat(client, "dog", n=2)
    assert err.value.status_code == 400 and err.value.body["message"].startswith("n: only n=1")
    with pytest.raises(openai.BadRequestError, match="context of 256 tokens"):
        chat(client, "dog", max_tokens=1000)
    reply = httpx.post(server[0].url + "/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                       json={"model": "run", "messages": [{"role": "wizard", "content": "hi"}]})
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error" and "messages.0.role" in error["message"]
    reply = httpx.post(server[0].url + "/v1/classify", headers={"Authorization": f"Bearer {KEY}"}, json={"input": "x"})
    assert reply.status_code == 400 and "classification runs" in reply.json()["error"]["message"]
    auth_json = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    reply = httpx.post(server[0].url + "/v1/completions", headers=auth_json, content=b"{oops")
    assert (reply.status_code, reply.json()["error"]["message"]) == (400, "the request body is not valid JSON")


def test_a_run_trained_from_a_gguf_base_is_served_from_its_own_folder(sft_run, tmp_path):
    """model.gguf_file names the base the run started from (tests/test_real_llm.py trains on the packaged
    SmolLM2 GGUF); the run folder holds an ordinary model, and serve loads that, as predict does."""
    import shutil

    import yaml

    from suites.serve.server import prepare

    run_dir = tmp_path / "from-gguf"
    shutil.copytree(sft_run, run_dir)
    with open(run_dir / "run_config.yaml") as fh:
        saved = yaml.safe_load(fh)
    saved["model"].update(name_or_path=str(tmp_path / "base"), gguf_file="base.Q4_0.gguf", from_config=None)
    write_yaml(run_dir / "run_config.yaml", saved)
    served, batcher, _ = prepare(str(run_dir), api_key=None, max_batch=2)
    batcher.close()
    assert served.cfg.model.gguf_file is None and served.cfg.model.name_or_path == str(run_dir)


def test_a_wrong_or_missing_key_gets_401(server):
    bad = openai.OpenAI(base_url=server[0].url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    reply = httpx.post(server[0].url + "/v1/completions", json={"model": "run", "prompt": "x"})
    assert reply.status_code == 401 and reply.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_classify_answers_as_predict(tmp_path, lora):
    """A full run, and a LoRA run with three labels (its base takes the trained head's shape first)."""
    from fastapi.testclient import TestClient
    from transformers import AutoConfig, AutoModel

    from suites.serve.server import prepare
    from tasks.tokenizer import BERT_LIKE, train_tokenizer
    from tests.conftest import TINY_BERT

    rows = sentiment_rows(48, 0)
    cfg = {"task": "classification", "output_dir": str(tmp_path / "run"), "model": {"from_config": dict(TINY_BERT)},
           "tokenizer": {"train_from_data": True, "vocab_size": 120, "algorithm": "wordpiece"},
           "data": {"max_length": 32},
           "train": {"max_steps": 3, "per_device_train_batch_size": 16, "save_strategy": "no", "use_cpu": True}}
    if lora:
        for i, r in enumerate(rows):
            r["label"] = ["neg", "pos", "mixed"][i % 3]
        tok = train_tokenizer((r["text"] for r in rows), 120, BERT_LIKE, "wordpiece")
        AutoModel.from_config(AutoConfig.for_model(**TINY_BERT, vocab_size=len(tok))).save_pretrained(tmp_path / "base")
        tok.save_pretrained(tmp_path / "base")
        cfg.pop("tokenizer")
        cfg["model"] = {"name_or_path": str(tmp_path / "base")}
        cfg["peft"] = {"r": 4, "target_modules": ["query", "value"]}
    cfg["data"]["train"] = write_jsonl(tmp_path / "train.jsonl", rows)
    path = write_yaml(tmp_path / "c.yaml", cfg)
    assert run(["train", path, "--quiet"]) == 0
    texts = [r["text"] for r in sentiment_rows(5, 3)]
    assert run(["predict", path, f"model.name_or_path={cfg['output_dir']}", "--quiet", "--input",
                write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in texts]), "--output",
                str(tmp_path / "p.jsonl")]) == 0
    predicted = [json.loads(line) for line in open(tmp_path / "p.jsonl")]
    served, batcher, app = prepare(cfg["output_dir"], api_key=None, max_batch=8)
    assert batcher is None and hasattr(served.model, "peft_config") == lora
    answer = TestClient(app).post("/v1/classify", json={"input": texts}).json()["data"]
    assert [a["label"] for a in answer] == [p["label"] for p in predicted]
    for a, p in zip(answer, predicted):
        assert len(a["probabilities"]) == (3 if lora else 2)
        assert a["probabilities"] == pytest.approx(p["probabilities"], abs=1e-5)


def test_command_line_mistakes_exit_2_naming_them(tmp_path, capsys):
    from suites.serve.server import is_loopback, missing_extra

    assert run(["serve", str(tmp_path / "nowhere")]) == 2
    assert "nowhere: no such directory" in capsys.readouterr().err
    assert run(["serve", str(tmp_path)]) == 2
    assert f"{tmp_path} is not a trainsuite run directory" in capsys.readouterr().err
    write_yaml(tmp_path / "run_config.yaml", {"task": "sft", "output_dir": str(tmp_path)})
    assert run(["serve", str(tmp_path)]) == 2
    assert f"{tmp_path} holds no trained model" in capsys.readouterr().err
    assert "pip install 'trainsuite[serve]'" in missing_extra(("fastapi", "no_such_module_for_serve"))
    assert missing_extra(("fastapi", "uvicorn")) is None
    assert [is_loopback(h) for h in ("127.0.0.1", "::1", "localhost", "0.0.0.0", "10.1.2.3", "myhost")] == \
        [True, True, True, False, False, False]  # a warning without --api-key on the last three


def test_a_lora_run_is_served_on_its_base(tmp_path):
    """The adapter loads on the base its adapter_config.json names: the reply is the merged model's, not the base's."""
    import torch
    from fastapi.testclient import TestClient
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    from suites.config.schema import GenerationConfig
    from suites.serve.server import prepare
    from suites.sft import generate
    from tasks.instruction import CHATML_TEMPLATE
    from tasks.tokenizer import CHAT_LIKE, train_tokenizer
    from tests.sft_common import WORDS, chat_rows

    base = str(tmp_path / "base")
    tok = train_tokenizer([f"repeat: {' '.join(WORDS)}"] * 5, 300, CHAT_LIKE)
    tok.chat_template = CHATML_TEMPLATE
    fields = {k: v for k, v in TINY_LLAMA.items() if k != "model_type"}
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                                 initializer_range=0.2, **fields)).save_pretrained(base)
    tok.save_pretrained(base)
    raw = sft_config(tmp_path, chat_rows(8), chat_rows(4, 1),
                     peft={"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]})
    raw["model"], raw["tokenizer"] = {"name_or_path": base}, {}
    raw["train"].update(max_steps=2, per_device_train_batch_size=4, learning_rate=0.05)
    assert run(["train", write_yaml(tmp_path / "c.yaml", raw), "--quiet"]) == 0
    assert run(["merge", raw["output_dir"], "--output", str(tmp_path / "merged")]) == 0

    served, batcher, app = prepare(raw["output_dir"], api_key=None, max_batch=4)
    try:
        body = {"model": "run", "messages": [{"role": "user", "content": "repeat: red cat"}], "max_tokens": 10}
        reply = TestClient(app).post("/v1/chat/completions", json=body).json()["choices"][0]["message"]["content"]
    finally:
        batcher.close()
    prompt = tok.apply_chat_template(body["messages"], add_generation_prompt=True, tokenize=False)
    gen = GenerationConfig(max_new_tokens=10)
    answers = [generate(AutoModelForCausalLM.from_pretrained(path), tok, [prompt], gen, 1)[0][0]
               for path in (str(tmp_path / "merged"), base)]
    assert hasattr(served.model, "peft_config") and reply == answers[0] != answers[1] and reply


@pytest.mark.slow
def test_the_command_serves_with_the_key_from_the_environment_and_never_logs_it(sft_run):
    import os
    import re
    import signal
    import subprocess
    import sys

    env = {**os.environ, "TRAINSUITE_API_KEY": "env-secret-77"}
    proc = subprocess.Popen([sys.executable, "-m", "suites.run.cli", "serve", sft_run, "--port", "0"],
                            env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    log = []
    try:
        for line in proc.stderr:  # blocks until uvicorn says where it listens (port 0: a free one)
            log.append(line)
            found = re.search(r"Uvicorn running on (http://\S+)", line)
            if found:
                break
        url = found.group(1)
        assert httpx.get(url + "/v1/models").status_code == 401
        models = httpx.get(url + "/v1/models", headers={"Authorization": "Bearer env-secret-77"}).json()
        assert models["data"][0]["id"] == "run"
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C: uvicorn shuts down, the command exits 0
        log += proc.stderr.read()
        proc.wait(timeout=60)
    text = "".join(log)
    assert proc.returncode == 0 and "serving" in text and "env-secret-77" not in text
