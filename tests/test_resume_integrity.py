"""Resume: a finished run is never trained past its end (also after a SIGKILL during the final
evaluation), and a checkpoint damaged after its save is never loaded (issue 21, items 1 and 5)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from suites import checkpoint_manifest, checkpoints
from suites.run.cli import run
from tests.conftest import write_yaml
from tests.test_reliability import REPO, assert_same_weights, exact_config, step_losses, weights


def trained_state(run_dir):
    with open(os.path.join(run_dir, "trainer_state.json")) as fh:
        return json.load(fh)


def results(run_dir):
    with open(os.path.join(run_dir, "results.json")) as fh:
        return json.load(fh)


def checkpoint_names(run_dir):
    return sorted(n for n in os.listdir(run_dir) if n.startswith("checkpoint-"))


# ---------------------------------------------------------------- a finished run


@pytest.mark.parametrize("end", [["train.max_steps=4"], ["train.num_train_epochs=1.5"]],
                         ids=["max_steps", "fractional_epochs"])
def test_resuming_a_finished_run_trains_nothing(tmp_path, cls_config, end, caplog):
    """Both runs end inside an epoch (6 steps an epoch; 4, and 9 steps in all), where transformers
    trained one more step at each --resume."""
    out = tmp_path / "r"
    cfg = write_yaml(tmp_path / "c.yaml", exact_config(cls_config, out, lr_scheduler_type="constant"))
    assert run(["train", cfg, *end]) == 0
    first, names = results(out), checkpoint_names(out)
    steps, model = trained_state(out)["global_step"], weights(out)
    assert steps in (4, 9) and names[-1] == f"checkpoint-{steps}"
    for _ in range(2):
        caplog.clear()
        with caplog.at_level("INFO", logger="trainsuite"):
            assert run(["train", cfg, *end, "--resume"]) == 0
        assert checkpoint_names(out) == names  # no checkpoint-(N+1)
        assert trained_state(out)["global_step"] == steps
        again = weights(out)
        assert all((again[k] == model[k]).all() for k in model)
        assert f"at step {steps} of {steps}, the end of the run: nothing left to train" in caplog.text
        now = results(out)
        for key in ("train_loss", "epoch", "num_train_samples", "global_batch_size"):
            assert now[key] == pytest.approx(first[key], rel=1e-9), key
        assert len(now["train_runtime_s_sessions"]) == 1  # the session that trained nothing adds none
        assert now["train_runtime"] > 0 and now["train_steps_per_second"] > 0
        # the checkpoint's history, with no summary row of a session of 0 steps (train_loss 0)
        assert not [r for r in trained_state(out)["log_history"] if "train_runtime" in r]
    # a checkpoint of an older version (no record of the run so far): no train_loss rather than 0
    os.remove(out / names[-1] / "trainsuite_totals.json")
    os.remove(out / names[-1] / "trainsuite_manifest.json")
    assert run(["train", cfg, *end, "--resume"]) == 0
    assert "train_loss" not in results(out) and results(out)["epoch"] == first["epoch"]


# ---------------------------------------------------------------- SIGKILL after the last checkpoint

# the CLI in a child process that stops for good in the final evaluation, after the last checkpoint and
# the final model are written, and says so by creating the file named by its first argument
_HOLD_IN_FINAL_EVALUATION = """
import sys, threading
from suites import final_eval
from suites.run import cli

def hold(trainer):
    open(sys.argv[1], "w").close()
    threading.Event().wait()

final_eval.final_metrics = hold
sys.exit(cli.run(sys.argv[2:]))
"""


def test_sigkill_in_final_evaluation_then_resume_completes_without_extra_steps(tmp_path, cls_config):
    eval_rows = cls_config["data"]["eval"]
    cfg_dict = exact_config(cls_config, tmp_path / "full", max_steps=4, save_steps=2,
                            lr_scheduler_type="constant")
    cfg_dict["data"]["eval"] = eval_rows  # evaluated at the epoch's end, after the last checkpoint
    cfg = write_yaml(tmp_path / "c.yaml", cfg_dict)
    full = tmp_path / "full"
    assert run(["train", cfg]) == 0
    whole = results(full)
    assert "eval_accuracy" in whole and checkpoint_names(full)[-1] == "checkpoint-4"

    # the same run in a child process (with the uninterrupted run's tokenizer), SIGKILLed while it evaluates
    out, held = tmp_path / "killed", tmp_path / "held"
    overrides = [f"output_dir={out}", "tokenizer.train_from_data=false", f"tokenizer.name_or_path={full}"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO)
    proc = subprocess.Popen([sys.executable, "-c", _HOLD_IN_FINAL_EVALUATION, str(held), "train", cfg, *overrides],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    end = time.time() + 300
    while not held.exists():
        if proc.poll() is not None or time.time() > end:
            proc.kill()
            pytest.fail(f"the child ended (rc {proc.returncode}) before the final evaluation:\n"
                        f"{proc.communicate()[1][-3000:]}")
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert checkpoint_names(out) == ["checkpoint-2", "checkpoint-4"] and not (out / "results.json").exists()
    at_kill = weights(out / "checkpoint-4")

    assert run(["train", cfg, *overrides, "--resume"]) == 0
    assert checkpoint_names(out) == ["checkpoint-2", "checkpoint-4"]  # no step 5
    assert trained_state(out)["global_step"] == 4
    resumed = weights(out)
    assert all((resumed[k] == at_kill[k]).all() for k in at_kill)  # no optimizer step after the kill
    done = results(out)
    assert done["train_loss"] == pytest.approx(whole["train_loss"], rel=1e-4)  # the mean of steps 1-4
    assert step_losses(out).keys() == step_losses(full).keys() == {1, 2, 3, 4}
    for key in ("epoch", "eval_accuracy", "num_train_samples", "global_batch_size"):
        assert done[key] == whole[key], key
    assert done["eval_loss"] == pytest.approx(whole["eval_loss"], rel=1e-4)
    assert_same_weights(full, out)


# ---------------------------------------------------------------- damaged checkpoints


def _truncate(path):
    with open(path, "r+b") as fh:
        fh.truncate(os.path.getsize(path) // 2)


def _flip_bytes(path):  # same size, other contents
    size = os.path.getsize(path)
    with open(path, "r+b") as fh:
        fh.seek(size - 16)
        tail = fh.read(8)
        fh.seek(size - 16)
        fh.write(bytes(b ^ 0xFF for b in tail))


DAMAGE = {"truncated": ("model.safetensors", _truncate), "bytes_flipped": ("model.safetensors", _flip_bytes),
          "deleted": ("optimizer.pt", os.remove)}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damaged_checkpoint_is_never_loaded(tmp_path, cls_config, kind, capsys, caplog):
    name, damage = DAMAGE[kind]
    out = tmp_path / "r"
    cfg = write_yaml(tmp_path / "c.yaml", exact_config(cls_config, out, max_steps=4, save_steps=2))
    assert run(["train", cfg]) == 0
    full = tmp_path / "full"
    shutil.copytree(out, full)  # the uninterrupted run, for the weights
    newest, older = out / "checkpoint-4", out / "checkpoint-2"
    assert checkpoint_manifest.problem(str(newest)) is None
    saved_older = tmp_path / "older"
    shutil.copytree(older, saved_older)
    damage(str(newest / name))
    capsys.readouterr()

    # --resume PATH to the damaged checkpoint: exit 2, the file named
    assert run(["train", cfg, "--resume", str(newest)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: --resume: {newest} is damaged: {newest / name} ")

    # no intact checkpoint at all: exit 2, the file named
    damage(str(older / name))
    assert run(["train", cfg, "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: --resume: no intact checkpoint in {out}: {newest / name} ")

    # plain --resume falls back to the previous intact checkpoint, with one warning naming the file
    shutil.rmtree(older)
    shutil.copytree(saved_older, older)
    caplog.clear()
    with caplog.at_level("WARNING", logger="trainsuite"):
        assert run(["train", cfg, "--resume"]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and warnings[0].startswith(f"skipping {newest}: damaged: {newest / name} ")
    assert trained_state(out)["global_step"] == 4 and checkpoint_names(out) == ["checkpoint-2", "checkpoint-4"]
    assert checkpoint_manifest.problem(str(newest)) is None  # steps 3-4 trained again and saved whole
    assert_same_weights(full, out)
    assert step_losses(out) == pytest.approx(step_losses(full), rel=1e-5)


def test_manifest_lists_every_file_and_stays_in_the_checkpoint(tmp_path, cls_config):
    """Written last, naming every file with its size; never linked into output_dir with the final
    model; rotation keeps counting checkpoints; a checkpoint without one (older versions) resumes."""
    out = tmp_path / "r"
    cfg = write_yaml(tmp_path / "c.yaml", exact_config(cls_config, out, max_steps=6, save_steps=2,
                                                       save_total_limit=2))
    assert run(["train", cfg]) == 0
    assert checkpoint_names(out) == ["checkpoint-4", "checkpoint-6"]
    assert checkpoint_manifest.MANIFEST_FILE not in os.listdir(out)
    ckpt = out / "checkpoint-6"
    with open(ckpt / checkpoint_manifest.MANIFEST_FILE) as fh:
        files = json.load(fh)["files"]
    on_disk = sorted(n for n in os.listdir(ckpt) if n != checkpoint_manifest.MANIFEST_FILE)
    assert sorted(files) == on_disk and "trainer_state.json" in files and "model.safetensors" in files
    assert all(files[n]["size"] == os.path.getsize(ckpt / n) for n in files)

    (ckpt / checkpoint_manifest.MANIFEST_FILE).unlink()  # as a checkpoint of an older version
    assert checkpoints.latest_intact_checkpoint(str(out)) == (str(ckpt), None)
    assert run(["train", cfg, "train.max_steps=8", "--resume"]) == 0
    assert checkpoint_names(out) == ["checkpoint-6", "checkpoint-8"]
    assert checkpoint_manifest.problem(str(out / "checkpoint-8")) is None


def test_unreadable_manifest_is_damage(tmp_path):
    ckpt = tmp_path / "checkpoint-2"
    ckpt.mkdir()
    (ckpt / "trainer_state.json").write_text("{}")
    checkpoint_manifest.write(str(ckpt))
    assert checkpoint_manifest.problem(str(ckpt)) is None
    (ckpt / checkpoint_manifest.MANIFEST_FILE).write_text('{"files": {"trainer_st')
    assert checkpoint_manifest.problem(str(ckpt)) == f"{ckpt / checkpoint_manifest.MANIFEST_FILE} is unreadable"
