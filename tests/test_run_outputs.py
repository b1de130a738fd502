"""What a run leaves in its output_dir: one run at a time, eval results beside the training
results, curves with points for a short run, the best checkpoint on a tie (issue 16)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from suites.run import lock as run_lock
from suites.run import run_dir
from suites.run.cli import run
from tests.conftest import write_yaml

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def _results(out, name="results.json"):
    with open(os.path.join(out, name)) as fh:
        return json.load(fh)


# ---------------------------------------------------------------- one run per output_dir


def test_a_second_run_into_a_held_output_dir_is_refused(tmp_path, cls_config, capsys):
    out = tmp_path / "run"
    cfg = write_yaml(tmp_path / "c.yaml", cls_config)
    with run_lock.hold(str(out)):  # a first run is going on (flock: another open file, same process)
        assert run(["train", cfg, "train.learning_rate=1e-5"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: output_dir {out} is in use by another run (pid ")
        assert run(["eval", cfg]) == 2  # eval and predict write there too
        assert os.listdir(out) == [run_lock.LOCK_NAME]  # the refused run wrote nothing
    assert not out.exists()  # the holder made the folder and wrote nothing: nothing left behind
    assert run(["train", cfg]) == 0
    assert not (out / run_lock.LOCK_NAME).exists()  # released and removed at the end


def test_a_killed_holder_leaves_no_stuck_lock(tmp_path, cls_config):
    out = tmp_path / "run"
    code = ("import sys; from suites.run import lock as run_lock\n"
            f"with run_lock.hold({str(out)!r}):\n    print('held', flush=True); sys.stdin.read()\n")
    holder = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=REPO))
    try:
        assert holder.stdout.readline().strip() == "held"
        cfg = write_yaml(tmp_path / "c.yaml", cls_config)
        assert run(["train", cfg]) == 2
        holder.send_signal(signal.SIGKILL)  # dies holding it: no cleanup ran
        holder.wait(timeout=30)
    finally:
        if holder.poll() is None:
            holder.kill()
    assert (out / run_lock.LOCK_NAME).exists()  # the file stays, its flock went with the process
    assert run(["train", cfg]) == 0


def test_other_ranks_of_a_launch_do_not_take_the_lock(tmp_path, monkeypatch):
    out = str(tmp_path / "run")
    with run_lock.hold(out):
        monkeypatch.setenv("RANK", "1")
        with run_lock.hold(out):  # rank 1 of the same launch shares the folder
            pass


def test_overwrite_keeps_the_lock_of_the_run_that_overwrites(tmp_path):
    out = tmp_path / "run"
    with run_lock.hold(str(out)):
        (out / "checkpoint-2").mkdir()
        (out / "results.json").write_text("{}")
        run_dir.clear(str(out))
        assert os.listdir(out) == [run_lock.LOCK_NAME]


# ---------------------------------------------------------------- eval beside the training results


def test_eval_writes_beside_the_training_results(tmp_path, cls_config):
    out = tmp_path / "run"
    cfg = write_yaml(tmp_path / "c.yaml", cls_config)
    assert run(["train", cfg]) == 0
    trained = (out / "results.json").read_text()
    assert run(["eval", cfg]) == 0
    assert (out / "results.json").read_text() == trained  # train_loss, runtime, counts, epoch: as trained
    ev = _results(out, "eval_results.json")
    assert ev["num_eval_samples"] == 30 and "eval_accuracy" in ev and ev["model"] == str(out)
    assert "epoch" not in ev  # an eval trains nothing: no "epoch 0" for a trained model
    assert ev["eval_loss"] == pytest.approx(_results(out)["eval_loss"], rel=1e-5)  # the same model
    html = (out / "report.html").read_text()
    assert "Evaluation (eval_results.json)" in html
    assert _results(out)["epoch"] == 1.0 and "<td>epoch</td><td class=\"num\">1</td>" in html.replace("\n", "")


# ---------------------------------------------------------------- curves of a short run


def test_a_short_run_logs_every_step(tmp_path, cls_config):
    """6 steps and no train.logging_steps: with the default 10 its report would have no loss curve."""
    from suites.outputs.figures import train_series

    cls_config["train"].pop("logging_steps")
    assert run(["train", write_yaml(tmp_path / "c.yaml", cls_config)]) == 0
    with open(tmp_path / "run" / "trainer_state.json") as fh:
        history = json.load(fh)["log_history"]
    assert [e["step"] for e in history if "loss" in e] == [1, 2, 3, 4, 5, 6]
    assert len(train_series(history)["loss"][0]) == 6


def test_the_users_logging_steps_stands(tmp_path, cls_config):
    cls_config["train"]["logging_steps"] = 4
    assert run(["train", write_yaml(tmp_path / "c.yaml", cls_config)]) == 0
    with open(tmp_path / "run" / "trainer_state.json") as fh:
        history = json.load(fh)["log_history"]
    assert [e["step"] for e in history if "loss" in e] == [4]


def test_logging_steps_follow_the_run_length():
    from suites.callbacks.log_frequency import logging_steps_for

    assert [logging_steps_for(n, 10) for n in (1, 8, 40, 60, 100, 199, 200, 10_000)] == [1, 1, 2, 3, 5, 9, 10, 10]


# ---------------------------------------------------------------- best checkpoint on a tie


def test_a_tie_of_the_best_metric_goes_to_the_lower_eval_loss(tmp_path, cls_config):
    """`make demo`: eval_accuracy 0.9 at steps 2 and 4, eval_loss 0.311 then 0.233: step 4 is best."""
    from suites import config
    from suites.run import runner

    cls_config["train"].update(metric_for_best_model="accuracy", eval_strategy="steps", eval_steps=2,
                               save_strategy="steps", save_steps=2)
    cfg = config.load(write_yaml(tmp_path / "c.yaml", cls_config))
    trainer = runner.build(cfg, "train")[3]
    state = trainer.state
    state.global_step, state.best_metric, state.best_global_step = 4, 0.9, 2
    state.log_history = [{"step": 2, "eval_loss": 0.311, "eval_accuracy": 0.9},
                         {"step": 4, "eval_loss": 0.233, "eval_accuracy": 0.9}]
    assert trainer._determine_best_metric({"eval_accuracy": 0.9, "eval_loss": 0.233}, None) is True
    assert state.best_global_step == 4 and state.best_metric == 0.9
    state.global_step = 6  # a tie with a higher eval_loss keeps the best
    state.log_history.append({"step": 6, "eval_loss": 0.4, "eval_accuracy": 0.9})
    assert trainer._determine_best_metric({"eval_accuracy": 0.9, "eval_loss": 0.4}, None) is False
    assert state.best_global_step == 4
    state.global_step = 8  # a better metric wins whatever its loss
    assert trainer._determine_best_metric({"eval_accuracy": 0.95, "eval_loss": 0.5}, None) is True
    assert state.best_global_step == 8
