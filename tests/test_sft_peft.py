"""LoRA, QLoRA (4-bit) and 8-bit runs on CPU from a tiny pretrained Llama; merge round trip."""

from __future__ import annotations

import json
import os

import pytest
import torch

from suites.run.cli import run
from tasks.instruction import CHATML_TEMPLATE
from tasks.tokenizer import CHAT_LIKE, train_tokenizer
from tests.conftest import write_yaml
from tests.sft_common import TINY_LLAMA, WORDS, chat_rows, sft_config


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    """A tiny 'pretrained' Llama with its tokenizer and chat template, saved like a hub checkpoint."""
    from transformers import LlamaConfig, LlamaForCausalLM

    path = tmp_path_factory.mktemp("base")
    tok = train_tokenizer([f"repeat: {' '.join(WORDS)}"] * 5, 300, CHAT_LIKE)
    tok.chat_template = CHATML_TEMPLATE
    fields = {k: v for k, v in TINY_LLAMA.items() if k != "model_type"}
    fields["hidden_size"], fields["intermediate_size"] = 64, 128  # bitsandbytes needs a few blocks
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id,
                                         eos_token_id=tok.eos_token_id, **fields))
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def _train(tmp_path, base_dir, **sections):
    raw = sft_config(tmp_path, chat_rows(16), chat_rows(4, 1), **sections)
    raw["model"], raw["tokenizer"] = {"name_or_path": base_dir}, {}
    raw["train"].update(max_steps=2, per_device_train_batch_size=4, learning_rate=0.05)
    path = write_yaml(tmp_path / "cfg.yaml", raw)
    assert run(["train", path, "--quiet"]) == 0
    with open(os.path.join(raw["output_dir"], "results.json")) as fh:
        return raw, json.load(fh)


@pytest.mark.parametrize("quant", [None, 4, 8])
def test_lora_runs_save_an_adapter_with_the_tokenizer(tmp_path, base_dir, quant):
    sections = {"peft": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}}
    if quant:
        sections["quantization"] = {"bits": quant}
    raw, res = _train(tmp_path, base_dir, **sections)
    out = raw["output_dir"]
    assert res["params_trainable"] < res["params_total"] / 5
    assert "eval_loss" in res and res["train_loss"] > 0
    assert os.path.isfile(os.path.join(out, "adapter_config.json"))
    assert os.path.isfile(os.path.join(out, "tokenizer.json"))
    # the saved adapter loads for eval on its own (modeling.load_adapter_model)
    assert run(["eval", write_yaml(tmp_path / "cfg.yaml", raw), f"model.name_or_path={out}", "--quiet"]) == 0


def test_dora_rslora_options_reach_peft(tmp_path, base_dir):
    _, res = _train(tmp_path, base_dir, peft={"r": 4, "use_dora": True, "use_rslora": True})
    assert res["params_trainable"] > 0


def test_merge_round_trip_gives_the_same_logits(tmp_path, base_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    raw, _ = _train(tmp_path, base_dir, peft={"r": 4, "alpha": 8})
    run_dir, merged_dir = raw["output_dir"], str(tmp_path / "merged")
    os.makedirs(merged_dir)  # another model's folder: merge refuses it, then replaces it with --force
    with open(os.path.join(merged_dir, "config.json"), "w") as fh:
        fh.write('{"model_type": "t5"}')
    assert run(["merge", run_dir, "--output", merged_dir]) == 2
    assert os.listdir(merged_dir) == ["config.json"]
    assert run(["merge", run_dir, "--output", merged_dir, "--force"]) == 0
    assert not [n for n in os.listdir(tmp_path) if ".partial-" in n]  # the temporary folder was moved
    merged = AutoModelForCausalLM.from_pretrained(merged_dir).eval()
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), run_dir).eval()
    plain = AutoModelForCausalLM.from_pretrained(base_dir).eval()
    ids = torch.tensor([[5, 9, 13, 21, 34, 40]])
    with torch.no_grad():
        a, b, c = merged(ids).logits, adapted(ids).logits, plain(ids).logits
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    assert (a - c).abs().max() > 1e-4  # the adapter did change the model
    assert os.path.isfile(os.path.join(merged_dir, "tokenizer.json"))
    assert not os.path.isfile(os.path.join(merged_dir, "adapter_config.json"))
    # shared like the run's own files: weights not left at safetensors' 0600; predict's template record kept
    from suites.file_modes import umask

    assert os.stat(os.path.join(merged_dir, "model.safetensors")).st_mode & 0o777 == 0o666 & ~umask()
    assert os.path.isfile(os.path.join(merged_dir, "sft_format.json"))


def test_merge_refuses_a_non_empty_output_before_loading(tmp_path, capsys):
    run_dir, out = tmp_path / "run", tmp_path / "out"
    run_dir.mkdir()
    out.mkdir()
    (run_dir / "adapter_config.json").write_text('{"base_model_name_or_path": "no/such-model"}')
    (out / "model.safetensors").write_text("another run's weights")
    assert run(["merge", str(run_dir), "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "exists and is not empty; pass --force" in err
    assert (out / "model.safetensors").read_text() == "another run's weights"
    assert run(["merge", str(run_dir), "--output", str(tmp_path)]) == 2  # would delete RUN_DIR itself
    assert "holds RUN_DIR" in capsys.readouterr().err
    assert run_dir.is_dir()


def test_merge_of_a_non_adapter_dir_fails_clearly(tmp_path, capsys):
    assert run(["merge", str(tmp_path), "--output", str(tmp_path / "m")]) == 2
    assert "no adapter_config.json" in capsys.readouterr().err


def test_a_4bit_model_counts_its_logical_parameters(base_dir):
    """Issue 25, 7(c): bitsandbytes stores a 4-bit weight packed, two values a byte; params_total counts
    the elements it stands for (its quant_state keeps the shape), as the unquantized model does."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from suites.modeling import parameter_counts

    plain = AutoModelForCausalLM.from_pretrained(base_dir)
    q4 = AutoModelForCausalLM.from_pretrained(base_dir, quantization_config=BitsAndBytesConfig(load_in_4bit=True))
    assert any(type(p).__name__ == "Params4bit" for p in q4.parameters())  # really packed
    assert sum(p.numel() for p in q4.parameters()) < parameter_counts(plain)["params_total"]
    assert parameter_counts(q4)["params_total"] == parameter_counts(plain)["params_total"]


def test_eval_and_predict_of_a_base_model_add_no_fresh_adapter(tmp_path, base_dir):
    """Issue 25, 7(e): the LoRA training config, used to evaluate or predict with a base (or merged) model,
    does not wrap it in a new untrained adapter; a LoRA run's folder still brings its own adapter."""
    from peft import PeftModel

    from suites import config
    from suites.run import runner

    lora = {"peft": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}}
    raw = sft_config(tmp_path, chat_rows(16), chat_rows(4, 1), **lora)
    raw["model"], raw["tokenizer"] = {"name_or_path": base_dir}, {}
    path = write_yaml(tmp_path / "cfg.yaml", raw)
    trainer = runner.build(config.load(path, []), "eval")[3]
    assert not isinstance(trainer.model, PeftModel)
    assert isinstance(runner.build(config.load(path, []), "train")[3].model, PeftModel)  # training: the adapter
    run_dir, _ = _train(tmp_path, base_dir, **lora)
    trainer = runner.build(config.load(path, [f"model.name_or_path={run_dir['output_dir']}"]), "eval")[3]
    assert isinstance(trainer.model, PeftModel)


def test_qlora_is_not_said_to_need_a_cuda_gpu():
    """Issue 25, 7(f): bitsandbytes 4-bit runs on the CPU too (the 4-bit test above trains there); the starter
    config and the docs say so."""
    from pathlib import Path

    from suites.run import starter

    line = next(x for x in starter.render("sft").splitlines() if "quantization:" in x)
    assert "CUDA" not in line and "CPU" in line
    root = Path(__file__).resolve().parents[1]
    for doc in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        for x in doc.read_text(encoding="utf-8").splitlines():
            assert not ("QLoRA" in x and ("needs a CUDA" in x or "CUDA GPU" in x)), (doc.name, x)
