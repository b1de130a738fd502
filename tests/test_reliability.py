"""Reliability: exact resume, interruption by a real signal, atomic checkpoints, non-finite steps."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from suites import checkpoints
from suites.run import signals as reliability
from suites.run.cli import run
from tests.conftest import write_yaml

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def exact_config(cls_config, out, **train):
    """fp32, no dropout, accumulation 2, 6 optimizer steps an epoch (96 rows / 8 / 2)."""
    cls_config["output_dir"] = str(out)
    cls_config["model"]["from_config"].update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    cls_config["data"].pop("eval")
    cls_config["train"] = {"num_train_epochs": 2, "per_device_train_batch_size": 8,
                           "gradient_accumulation_steps": 2, "learning_rate": 1e-3, "logging_steps": 1,
                           "save_strategy": "steps", "save_steps": 4, "save_total_limit": None,
                           "use_cpu": True, **train}
    return cls_config


def step_losses(run_dir):
    with open(os.path.join(run_dir, "trainer_state.json")) as fh:
        history = json.load(fh)["log_history"]
    return {e["step"]: e["loss"] for e in history if "loss" in e}


def weights(path):
    return load_file(os.path.join(path, "model.safetensors"))


def assert_same_weights(a, b):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=1e-6, msg=k)


@pytest.mark.parametrize("stop", [4, 8])
def test_resume_mid_epoch_matches_uninterrupted(tmp_path, cls_config, stop):
    """A run stopped after step 4 (of 6 in epoch 1) or 8 (in epoch 2), inside an accumulation
    schedule, and resumed with a reloaded - not retrained - tokenizer ends with the same losses and
    weights. Epoch 2 catches a length-grouped order drawn from the global RNG, which a resumed run
    holds in another state at that point (the default sampler of classification and seq2seq)."""
    full = tmp_path / "full"
    cfg = write_yaml(tmp_path / "c.yaml", exact_config(cls_config, full))
    assert run(["train", cfg]) == 0
    assert sorted(os.listdir(full / f"checkpoint-{stop}")) and (full / "checkpoint-12").is_dir()

    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(full / f"checkpoint-{stop}", resumed / f"checkpoint-{stop}")  # what an interrupted run leaves
    assert run(["train", cfg, f"output_dir={resumed}", "--resume"]) == 0

    a, b = step_losses(full), step_losses(resumed)
    assert sorted(a) == list(range(1, 13)) and a.keys() == b.keys()
    for step in a:
        assert b[step] == pytest.approx(a[step], rel=1e-5, abs=1e-6), step
    assert_same_weights(full, resumed)
    with open(full / "tokenizer.json") as fa, open(resumed / "tokenizer.json") as fb:
        assert json.load(fa)["model"]["vocab"] == json.load(fb)["model"]["vocab"]


def test_resume_refuses_missing_or_incomplete(tmp_path, cls_config, capsys):
    cfg = write_yaml(tmp_path / "c.yaml", exact_config(cls_config, tmp_path / "r"))
    assert run(["train", cfg, "--resume"]) == 2
    assert "no complete checkpoint" in capsys.readouterr().err
    assert run(["train", cfg, "train.resume_from_checkpoint=true"]) == 2  # the config's --resume
    assert "no complete checkpoint" in capsys.readouterr().err
    assert run(["train", cfg, "--resume", "seed=3"]) == 2  # an override after --resume is no CHECKPOINT
    assert "no complete checkpoint" in capsys.readouterr().err
    bad = tmp_path / "r" / "checkpoint-3"
    bad.mkdir(parents=True)
    assert run(["train", cfg, "--resume", str(bad)]) == 2
    assert "incomplete" in capsys.readouterr().err


def test_latest_checkpoint_skips_incomplete(tmp_path, caplog):
    out = tmp_path / "run"
    for name, complete in (("checkpoint-4", True), ("checkpoint-12", False),
                           (".partial-checkpoint-8/checkpoint-8", False), ("checkpoint-10", "broken")):
        (out / name).mkdir(parents=True)
        (out / name / "model.safetensors").write_bytes(b"x")
        if complete is True:
            (out / name / "trainer_state.json").write_text('{"global_step": 4}')
        elif complete == "broken":  # cut off while being written
            (out / name / "trainer_state.json").write_text('{"global_st')
    with caplog.at_level("WARNING", logger="trainsuite"):
        assert checkpoints.latest_checkpoint(str(out)) == str(out / "checkpoint-4")
    text = caplog.text
    for name in ("checkpoint-12", "checkpoint-10", ".partial-checkpoint-8"):
        assert name in text


def test_kill_during_save_leaves_no_complete_looking_checkpoint(tmp_path, cls_config, monkeypatch):
    import transformers

    cfg = write_yaml(tmp_path / "c.yaml", exact_config(cls_config, tmp_path / "r", max_steps=4, save_steps=2))

    def crash(self, output_dir):  # the process dies after the weights, before the RNG state
        raise RuntimeError("killed mid-save")

    monkeypatch.setattr(transformers.Trainer, "_save_rng_state", crash)
    with pytest.raises(RuntimeError, match="killed mid-save"):
        run(["train", cfg])
    names = os.listdir(tmp_path / "r")
    assert ".partial-checkpoint-2" in names
    assert not [n for n in names if n.startswith("checkpoint-")]
    assert checkpoints.latest_checkpoint(str(tmp_path / "r")) is None


# ---------------------------------------------------------------- a real signal


def _start(cfg, *extra):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO)
    return subprocess.Popen([sys.executable, "-m", "suites.run.cli", "train", cfg, *extra], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_checkpoint(out, proc, timeout=120):
    """Until some checkpoint-N exists (any N: with rotation a given one may come and go between
    two polls on a busy machine)."""
    end = time.time() + timeout
    while not (os.path.isdir(out) and any(n.startswith("checkpoint-") for n in os.listdir(out))):
        if proc.poll() is not None or time.time() > end:
            _, err = proc.communicate()
            pytest.fail(f"training ended (rc {proc.returncode}) before a checkpoint appeared:\n{err[-3000:]}")
        time.sleep(0.02)


def long_run_config(tmp_path, cls_config):
    # many epochs so that the run is still going when the signal comes; constant lr so that a
    # resume with a lower max_steps keeps the same schedule
    return write_yaml(tmp_path / "c.yaml", exact_config(
        cls_config, tmp_path / "run", num_train_epochs=500, save_steps=3, save_total_limit=2,
        lr_scheduler_type="constant", warmup_steps=0, logging_steps=50))


def test_sigterm_saves_checkpoint_exits_3_and_resumes(tmp_path, cls_config):
    cfg = long_run_config(tmp_path, cls_config)
    out = tmp_path / "run"
    proc = _start(cfg)
    _wait_for_checkpoint(out, proc)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == reliability.EXIT_INTERRUPTED, stderr[-3000:]
    assert "Traceback" not in stderr
    last = [x for x in stderr.splitlines() if x.strip()][-1]
    assert last.startswith("stopped: interrupted by SIGTERM at step ") and "--resume" in last
    assert last.endswith(f"continue with: trainsuite train {cfg} --resume")
    step = int(last.split("at step ")[1].split(":")[0])
    ckpt = out / f"checkpoint-{step}"
    assert checkpoints.checkpoint_is_complete(str(ckpt))
    assert not [n for n in os.listdir(out) if n.startswith(checkpoints.PARTIAL_PREFIX)]
    assert not (out / "results.json").exists()  # an interrupted run is not a finished one

    tokenizer = tmp_path / "tokenizer"  # the checkpoint's own: rotation may delete the checkpoint below
    shutil.copytree(ckpt, tokenizer, ignore=lambda d, names: [n for n in names if not n.startswith(
        ("tokenizer", "special_tokens", "vocab"))])

    # --resume continues from that checkpoint to the end (here: 2 more steps)
    assert run(["train", cfg, f"train.max_steps={step + 2}", "--resume"]) == 0
    state = json.load(open(out / "trainer_state.json"))
    assert state["global_step"] == step + 2
    resumed = json.load(open(out / "results.json"))

    # its results describe the whole run, as the uninterrupted run's do (issue 16)
    # (with the checkpoint's tokenizer: one trained from data may differ between two processes)
    full = tmp_path / "full"
    assert run(["train", cfg, f"train.max_steps={step + 2}", f"output_dir={full}",
                "tokenizer.train_from_data=false", f"tokenizer.name_or_path={tokenizer}"]) == 0
    whole = json.load(open(full / "results.json"))
    assert resumed["train_loss"] == pytest.approx(whole["train_loss"], rel=1e-4)  # all steps, not the last 2
    parts = resumed["train_runtime_s_sessions"]
    assert len(parts) == 2 and len(whole["train_runtime_s_sessions"]) == 1
    assert resumed["train_runtime_s"] == pytest.approx(sum(parts), abs=2e-3)
    assert resumed["train_runtime"] > parts[0]  # transformers' runtime covers the first session too
    assert resumed["train_steps_per_second"] == pytest.approx(
        (step + 2) / resumed["train_runtime"], rel=1e-2)
    for key in ("epoch", "num_train_samples", "global_batch_size"):
        assert resumed[key] == whole[key], key


def test_second_signal_stops_at_once(tmp_path, cls_config):
    cfg = long_run_config(tmp_path, cls_config)
    proc = _start(cfg)
    _wait_for_checkpoint(tmp_path / "run", proc)
    proc.send_signal(signal.SIGINT)
    seen = []
    for line in proc.stderr:  # two signals sent together would arrive as one
        seen.append(line)
        if "SIGINT received" in line:
            proc.send_signal(signal.SIGINT)
            break
    _, rest = proc.communicate(timeout=120)
    stderr = "".join(seen) + rest
    assert proc.returncode == -signal.SIGINT, stderr[-3000:]
    assert "again: stopping at once" in stderr


# ---------------------------------------------------------------- non-finite steps


@pytest.fixture
def nan_at_call(monkeypatch):
    """Make the n-th training loss NaN."""
    from suites.classification import ClassificationLoss

    original = ClassificationLoss.__call__
    calls = {"n": 0, "at": None}

    def patched(self, outputs, labels, num_items_in_batch=None):
        loss = original(self, outputs, labels, num_items_in_batch)
        if torch.is_grad_enabled():
            calls["n"] += 1
            if calls["n"] == calls["at"]:
                return loss * float("nan")
        return loss

    monkeypatch.setattr(ClassificationLoss, "__call__", patched)
    return calls


def test_nonfinite_loss_stops_naming_step_and_keeps_last_good_checkpoint(tmp_path, cls_config, nan_at_call,
                                                                       capsys):
    cfg = write_yaml(tmp_path / "c.yaml", exact_config(cls_config, tmp_path / "r", save_steps=2,
                                                       gradient_accumulation_steps=1))
    nan_at_call["at"] = 5  # step 5
    assert run(["train", cfg]) == reliability.EXIT_NONFINITE
    err = capsys.readouterr().err
    assert "step 5: non-finite loss" in err and "checkpoint-4" in err
    names = os.listdir(tmp_path / "r")
    assert "checkpoint-4" in names and "checkpoint-6" not in names
    assert "model.safetensors" not in names and "results.json" not in names
    for v in weights(tmp_path / "r" / "checkpoint-4").values():
        assert torch.isfinite(v).all()


def test_nonfinite_skip_counts_and_keeps_weights_finite(tmp_path, cls_config, nan_at_call):
    cls_config["nonfinite"] = "skip"
    cfg = write_yaml(tmp_path / "c.yaml", exact_config(cls_config, tmp_path / "r", save_strategy="no",
                                                       gradient_accumulation_steps=1))
    nan_at_call["at"] = 3
    assert run(["train", cfg]) == 0
    results = json.load(open(tmp_path / "r" / "results.json"))
    assert results["nonfinite_steps_skipped"] == 1
    assert all(torch.isfinite(v).all() for v in weights(tmp_path / "r").values())


def test_nonfinite_key_is_checked(tmp_path, cls_config, capsys):
    cls_config["nonfinite"] = "ignore"
    cfg = write_yaml(tmp_path / "c.yaml", cls_config)
    assert run(["train", cfg]) == 2
    assert "'nonfinite' must be one of 'stop', 'skip'" in capsys.readouterr().err


def test_signal_handlers_restored_after_a_crash(tmp_path, cls_config, monkeypatch):
    import transformers

    before = signal.getsignal(signal.SIGINT)
    cfg = write_yaml(tmp_path / "c.yaml", exact_config(cls_config, tmp_path / "r", max_steps=2))

    def boom(*args, **kwargs):
        raise RuntimeError("out of memory, say")

    monkeypatch.setattr(transformers.Trainer, "training_step", boom)
    with pytest.raises(RuntimeError, match="out of memory"):
        run(["train", cfg])
    assert signal.getsignal(signal.SIGINT) is before


def test_guard_reuses_the_trainers_gradient_norm(tmp_path, cls_config, monkeypatch):
    from suites import config as config_mod
    from suites.run import runner
    from suites.callbacks.nonfinite import NonFiniteGuard

    seen, original = [], NonFiniteGuard.observe_grad_norm

    def spy(self, norm):
        seen.append(norm)
        original(self, norm)

    total_norm = torch.nn.utils.get_total_norm

    def only_for_clipping(*a, **k):  # accelerate >= 1.16 clips with it; the guard must not compute it again
        if sys._getframe(1).f_globals.get("__name__") == NonFiniteGuard.__module__:
            pytest.fail("norm computed twice")
        return total_norm(*a, **k)

    monkeypatch.setattr(NonFiniteGuard, "observe_grad_norm", spy)
    monkeypatch.setattr(torch.nn.utils, "get_total_norm", only_for_clipping)
    cfg = config_mod.load(write_yaml(tmp_path / "c.yaml", exact_config(cls_config, tmp_path / "r", max_steps=2)))
    _, _, _, trainer, _ = runner.build(cfg, "train")
    trainer.train()
    assert len(seen) == 2 and all(float(n) > 0 for n in seen)


def test_continue_hint_repeats_the_overrides(tmp_path):
    """The printed resume command carries the command-line overrides (an output_dir=... among them
    decides which run is resumed)."""
    from types import SimpleNamespace

    stop = reliability.GracefulStop()
    stop.received, stop.saved_step = signal.SIGTERM, 7
    trainer = SimpleNamespace(args=SimpleNamespace(output_dir=str(tmp_path)),
                              callback_handler=SimpleNamespace(callbacks=[stop]))
    cfg = SimpleNamespace(source_path="/c/my run.yaml", source_overrides=["output_dir=runs/x", "train.max_steps=300"])
    with pytest.raises(reliability.TrainingInterrupted) as e:
        reliability.raise_if_stopped(trainer, cfg)
    assert str(e.value).endswith(
        "continue with: trainsuite train '/c/my run.yaml' output_dir=runs/x train.max_steps=300 --resume")
