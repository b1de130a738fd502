"""No secret in what a run writes (issue 21, item 3): run_config.yaml, report.html, training_args.bin,
results, the tracking params, the lock and marker files, the log and the last error line. The rule that
picks secret keys is checked against every key of the config schema, so that no ordinary key is hidden."""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
import types
import typing

import pytest
import yaml

from suites.config import redact, schema
from tests.conftest import write_yaml

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
SECRET = "hf_SECRETtoken0123456789"
WANDB = "wandbSECRETkey9876543210"


def schema_keys() -> set:
    """Every key a config may hold: our sections, transformers' and trl's training arguments, the
    generation settings and the config fields of the model types we train from scratch."""
    import transformers
    import trl

    keys = set()

    def walk(cls):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            keys.add(f.name)
            inner = schema.dataclass_of(hints[f.name])
            if inner:
                walk(inner)

    walk(schema.RunConfig)
    for cls in (transformers.TrainingArguments, transformers.Seq2SeqTrainingArguments, trl.SFTConfig,
                trl.DPOConfig):
        keys |= {f.name for f in dataclasses.fields(cls)}
    keys |= set(transformers.GenerationConfig().to_dict())
    for config_cls in (transformers.BertConfig, transformers.LlamaConfig, transformers.T5Config):
        keys |= set(config_cls().to_dict())
    return keys


def test_no_ordinary_config_key_is_secret():
    keys = schema_keys()
    assert len(keys) > 300  # the walk found the schema, not an empty set
    assert sorted(k for k in keys if redact.is_secret_key(k)) == ["hub_token"]
    for name in ("pad_token", "eos_token", "bos_token", "unk_token", "sep_token", "cls_token", "mask_token",
                 "forced_bos_token", "decoder_start_token", "max_new_tokens", "add_special_tokens",
                 "pad_token_id", "metric_for_best_model", "tokenizer", "keep_end", "push_to_hub"):
        assert not redact.is_secret_key(name), name


@pytest.mark.parametrize("name", ["hub_token", "token", "train.hub_token", "openai_api_key", "api_key",
                                  "db_password", "passwd", "client_secret", "aws_secret_access_key",
                                  "credentials", "private_key", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN",
                                  "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN", "WANDB_API_KEY",
                                  "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "GITHUB_TOKEN", "signing_key"])
def test_secret_keys(name):
    assert redact.is_secret_key(name)


def test_redact_copies_and_keeps_the_keys():
    cfg = {"train": {"hub_token": SECRET, "push_to_hub": True, "learning_rate": 1e-3},
           "model": {"name_or_path": "https://user:pw123@host.example/m", "token": None},
           "tokenizer": {"pad_token": "<pad>"}, "extra": [{"api_key": "k-12345"}]}
    out = redact.redact(cfg)
    assert out["train"] == {"hub_token": "***", "push_to_hub": True, "learning_rate": 1e-3}
    assert out["model"] == {"name_or_path": "https://user:***@host.example/m", "token": None}  # unset stays null
    assert out["tokenizer"]["pad_token"] == "<pad>" and out["extra"] == [{"api_key": "***"}]
    assert cfg["train"]["hub_token"] == SECRET  # only the copy: the run keeps using the real token
    assert redact.redact({"eval_f1_secret": 0.5, "password": 1234}, numbers=False) == {
        "eval_f1_secret": 0.5, "password": 1234}  # results: a metric of a class named "secret"
    assert redact.redact({"password": 1234}) == {"password": "***"}  # a config: a number can be a password
    assert redact.redact_argv(["trainsuite", "train", "c.yaml", f"train.hub_token={SECRET}", "seed=1"]) == [
        "trainsuite", "train", "c.yaml", "train.hub_token=***", "seed=1"]


def test_yaml_text_of_an_older_run_is_redacted():
    text = (f"task: classification\ntrain:\n  hub_token: {SECRET}\n  hub_model_id: me/m\n  pad_token: x\n"
            "  secret_note: null\ndata:\n  train: https://u:pw99@h.example/t.jsonl\n")
    out = redact.redact_yaml_text(text)
    assert SECRET not in out and "pw99" not in out
    assert yaml.safe_load(out)["train"] == {"hub_token": "***", "hub_model_id": "me/m", "pad_token": "x",
                                            "secret_note": None}
    assert "https://u:***@h.example/t.jsonl" in out


def test_log_lines_are_masked(caplog, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", WANDB)
    redact.install_log_filter({"train": {"hub_token": SECRET}})
    log = logging.getLogger("trainsuite")
    with caplog.at_level(logging.INFO, logger="trainsuite"):
        log.info("pushing with %s and %s to %s", SECRET, WANDB, "https://me:pw4567@mlflow.example")
    assert caplog.messages == ["pushing with *** and *** to https://me:***@mlflow.example"]
    assert redact.scrub(f"error: bad token {SECRET}") == "error: bad token ***"


def test_tracking_gets_the_redacted_config(tmp_path, cls_config, monkeypatch):
    from transformers.integrations import TensorBoardCallback

    from suites import config
    from suites.outputs import tracking

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cls_config["train"]["hub_token"] = SECRET
    cfg = config.load(write_yaml(tmp_path / "c.yaml", cls_config))
    cfg.train["report_to"] = ["tensorboard"]
    written = []
    tb = object.__new__(TensorBoardCallback)  # the integration itself is not installed here
    tb.tb_writer = types.SimpleNamespace(add_text=lambda *a: written.append(a), add_scalar=lambda *a: None)
    callbacks = [tb]
    trainer = types.SimpleNamespace(callback_handler=types.SimpleNamespace(callbacks=callbacks),
                                    add_callback=callbacks.append)
    tracking.attach(cfg, trainer, {})
    callbacks[-1].on_train_begin(None, types.SimpleNamespace(is_world_process_zero=True), None)
    assert '"hub_token": "***"' in written[0][1] and SECRET not in written[0][1]
    assert cfg.train["hub_token"] == SECRET


def test_no_secret_in_any_file_of_a_run_nor_on_stderr(tmp_path, cls_config):
    """A real run with train.hub_token on the command line and WANDB_API_KEY in the environment: no file
    of output_dir (checkpoints, training_args.bin, report.html ...) and no stderr line holds either."""
    cls_config["train"].update({"max_steps": 2, "save_strategy": "steps", "save_steps": 1,
                                "eval_strategy": "steps", "eval_steps": 2, "logging_steps": 1})
    cls_config["data"]["max_train_samples"] = 32
    cfg = write_yaml(tmp_path / "c.yaml", cls_config)
    env = dict(os.environ, PYTHONPATH=REPO, WANDB_API_KEY=WANDB, OMP_NUM_THREADS="1",
               MLFLOW_TRACKING_URI="https://me:mlflowPW4567@mlflow.example")
    proc = subprocess.run([sys.executable, "-m", "suites.run.cli", "train", cfg, f"train.hub_token={SECRET}"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = cls_config["output_dir"]
    names = []
    for root, _, files in os.walk(out):
        for name in files:
            path = os.path.join(root, name)
            names.append(os.path.relpath(path, out))
            with open(path, "rb") as fh:
                data = fh.read()
            for secret in (SECRET, WANDB, "mlflowPW4567"):
                assert secret.encode() not in data, (secret, path)
    assert "training_args.bin" in names and "checkpoint-2/training_args.bin" in names
    for secret in (SECRET, WANDB, "mlflowPW4567"):
        assert secret not in proc.stderr and secret not in proc.stdout
    with open(os.path.join(out, "run_config.yaml")) as fh:
        assert yaml.safe_load(fh)["train"]["hub_token"] == "***"  # the key stays, with a placeholder
    with open(os.path.join(out, "report.html")) as fh:
        assert "hub_token: &#x27;***&#x27;" in fh.read()
    import torch

    assert torch.load(os.path.join(out, "training_args.bin"), weights_only=False).hub_token == "***"


def test_the_trainer_keeps_the_real_token(tmp_path):
    """training_args.bin is written again without the token; the arguments the trainer pushes with
    keep it (train.push_to_hub needs it)."""
    import torch
    from transformers import TrainingArguments

    from suites.base import _redact_saved_args

    args = TrainingArguments(output_dir=str(tmp_path), hub_token=SECRET, use_cpu=True, report_to="none")
    torch.save(args, tmp_path / "training_args.bin")
    _redact_saved_args(args, str(tmp_path))
    assert args.hub_token == SECRET
    assert torch.load(tmp_path / "training_args.bin", weights_only=False).hub_token == "***"


def test_the_launcher_echoes_no_token():
    from suites.run import launch

    hint = launch.resume_command(["--nproc", "2", "c.yaml", f"train.hub_token={SECRET}"], "scripts/launch")
    assert SECRET not in hint and "train.hub_token=***" in hint
