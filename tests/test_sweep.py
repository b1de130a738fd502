"""`trainsuite sweep` end to end on tiny trials: pruning stops a trial early, a crashed trial is one
failed trial, kill -9 then rerun continues the study, two workers share one, and the outputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import optuna
import yaml

from conftest import sentiment_rows, write_jsonl, write_yaml
from sweep_common import REPO, read_sweep, run_sweep, sweep_cmd, sweep_config

STEPS_ALL = (2, 4, 6, 8)


def _good_trials(study_file, name):
    """Two finished trials that scored a perfect eval loss at every evaluation: the median any real
    trial is compared with."""
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    study = optuna.create_study(storage=JournalStorage(JournalFileBackend(study_file)), study_name=name,
                                direction="minimize")
    dist = optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)
    for lr in (1e-3, 2e-3):
        study.add_trial(optuna.trial.create_trial(
            params={"train.learning_rate": lr}, distributions={"train.learning_rate": dist}, value=0.0,
            intermediate_values={s: 0.0 for s in STEPS_ALL}))


def _third_trial_after_two_good_ones(tmp_path, cfg):
    """(output_dir, the sweep process, sweep.json's record of trial 2) of a sweep whose study already holds two good trials."""
    out = cfg["output_dir"]
    os.makedirs(out)
    _good_trials(os.path.join(out, "sweep.journal"), "run")
    proc = run_sweep(write_yaml(tmp_path / "c.yaml", cfg))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc, read_sweep(out)["trials"][2]


def test_the_pruner_stops_a_worse_trial_at_its_first_evaluation(tmp_path, cls_config):
    cfg = sweep_config(cls_config, trials=3, max_steps=8)
    out, proc, trial = _third_trial_after_two_good_ones(tmp_path, cfg)
    assert trial["state"] == "pruned" and trial["steps"] == [2] and trial["dir"] == "trial-002"
    with open(os.path.join(out, "trial-002", "trainer_state.json")) as fh:
        assert json.load(fh)["global_step"] == 2  # of 8: stopped at the evaluation the pruner judged
    assert "trial 2 pruned: train.learning_rate=" in proc.stderr
    assert os.path.isfile(os.path.join(out, "trial-002", "report.html"))  # an ordinary run dir


def test_a_crashed_trial_is_failed_and_the_sweep_goes_on(tmp_path, cls_config):
    # 33 hidden units over 2 heads passes the config checks; the model refuses it when it is built
    cfg = sweep_config(cls_config, trials=2)
    cfg["sweep"]["space"] = {"model.from_config.hidden_size": {"choice": [33]}}
    proc = run_sweep(write_yaml(tmp_path / "c.yaml", cfg))
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = read_sweep(cfg["output_dir"])
    assert [t["state"] for t in data["trials"]] == ["failed", "failed"] and data["best"] is None
    assert "exit code 1, see trial-000.log" in proc.stderr
    assert "[2/2 finished" in proc.stderr


def test_kill_9_mid_trial_then_rerun_continues_the_study(tmp_path, cls_config):
    cfg = sweep_config(cls_config, trials=2, max_steps=8)
    out, path = cfg["output_dir"], write_yaml(tmp_path / "c.yaml", cfg)
    proc = subprocess.Popen(sweep_cmd(path), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = os.path.join(out, "trial-000")
    deadline = time.monotonic() + 300
    while not os.path.isdir(first) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)  # waiting for the trial's run to start: nothing else to wait on
    assert os.path.isdir(first) and proc.poll() is None
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    again = run_sweep(path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "trial 0: its sweep process died while it ran; failed, its parameters queued again" in again.stderr
    trials = read_sweep(out)["trials"]
    assert [(t["number"], t["state"], t["requeued"]) for t in trials] == \
        [(0, "failed", True), (1, "complete", False), (2, "complete", False)]
    assert trials[1]["params"] == trials[0]["params"]  # the interrupted trial's parameters, run again
    assert [t["dir"] for t in trials] == ["trial-000", "trial-001", "trial-002"]
    for t in trials[1:]:
        assert os.path.isfile(os.path.join(out, t["dir"], "results.json"))
    assert run_sweep(path).stderr.count("sweep: trial") == 0  # finished: a third run adds nothing


def test_two_workers_share_one_study_and_the_outputs(tmp_path, cls_config):
    cfg = sweep_config(cls_config, trials=2)
    cfg["sweep"]["holdout"] = write_jsonl(tmp_path / "test.jsonl", sentiment_rows(20, 2))
    out, path = cfg["output_dir"], write_yaml(tmp_path / "c.yaml", cfg)
    proc = run_sweep(path, "--workers", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = read_sweep(out)
    assert [t["state"] for t in data["trials"]] == ["complete", "complete"]
    # the command that started the workers compares once, after both: one baseline, no clash in its folder
    assert proc.stderr.count("training the config as written") == 1 and data["holdout"]["note"] is None
    assert sorted(t["dir"] for t in data["trials"]) == ["trial-000", "trial-001"]
    from suites.sweep.study import load_study

    owners = {t.user_attrs["worker"] for t in load_study(os.path.join(out, "sweep.journal"), "run").trials}
    assert len(owners) == 2  # one trial each, none run twice
    # the outputs: best.yaml trains as it is (the best parameters, no sweep block)
    best = yaml.safe_load(open(os.path.join(out, "best.yaml")))
    assert "sweep" not in best and best["train"]["learning_rate"] == data["best"]["params"]["train.learning_rate"]
    from suites import config

    assert config.load(os.path.join(out, "best.yaml")).output_dir == os.path.join(out, "best")
    page = open(os.path.join(out, "sweep.html")).read()
    assert 'href="trial-000/report.html"' in page and "data:image/png;base64," in page and "http" not in page
    os.remove(os.path.join(out, "sweep.html"))
    again = subprocess.run([*sweep_cmd(out)[:3], "report", out], capture_output=True, text=True, cwd=REPO)
    assert again.returncode == 0 and os.path.isfile(os.path.join(out, "sweep.html")), again.stderr[-2000:]


def test_a_two_process_trial_runs_through_the_launcher_and_stops_on_every_rank(tmp_path, cls_config):
    """sweep.nproc: 2 (gloo on CPU): rank 0 asks the pruner, the other rank follows (else it would wait
    for rank 0 in the next step's all-reduce)."""
    cfg = sweep_config(cls_config, trials=3, max_steps=8, nproc=2)
    out, proc, trial = _third_trial_after_two_good_ones(tmp_path, cfg)
    assert trial["state"] == "pruned" and trial["steps"] == [2]
    with open(os.path.join(out, "trial-002", "results.json")) as fh:
        assert json.load(fh)["world_size"] == 2


def test_ctrl_c_queues_the_running_trial_again(tmp_path, cls_config):
    cfg = sweep_config(cls_config, trials=1, max_steps=8)
    out, path = cfg["output_dir"], write_yaml(tmp_path / "c.yaml", cfg)
    proc = subprocess.Popen(sweep_cmd(path), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 300
    while not os.path.isdir(os.path.join(out, "trial-000")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)  # waiting for the trial's run to start: nothing else to wait on
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1] == ("interrupted: trial 0 stopped and queued again; run the same "
                                           "command to continue the sweep")
    from suites.sweep.study import load_study

    study = load_study(os.path.join(out, "sweep.journal"), "run")
    assert [t.state.name for t in study.trials] == ["FAIL", "WAITING"]
    assert study.trials[1].system_attrs["fixed_params"] == study.trials[0].params  # queued again
    assert study.trials[0].user_attrs["requeued"]


def test_the_best_trial_and_the_config_as_written_are_scored_on_the_holdout_quietly(tmp_path, cls_config):
    """sweep.holdout: trials are selected on data.eval; at the end the best trial and the config as
    written (OUTPUT_DIR/baseline) are evaluated on a file no trial saw. --quiet: no progress lines."""
    cfg = sweep_config(cls_config, trials=1)
    cfg["sweep"]["holdout"] = write_jsonl(tmp_path / "test.jsonl", sentiment_rows(20, 2))
    out, path = cfg["output_dir"], write_yaml(tmp_path / "c.yaml", cfg)
    proc = run_sweep(path, "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sweep:" not in proc.stderr  # neither the trials' lines nor the comparison's
    data = read_sweep(out)
    held = data["holdout"]
    assert json.loads(proc.stdout)["holdout"] == held
    assert held["metric"] == "eval_loss" and not held["stale"] and held["note"] is None
    assert held["best"]["number"] == data["best"]["number"] and held["best"]["eval"] == data["best"]["metric"]
    for side in ("baseline", "best"):
        run = held[side]["dir"]
        with open(os.path.join(out, "holdout", run, "eval_results.json")) as fh:
            assert json.load(fh)["eval_loss"] == held[side]["holdout"]
    with open(os.path.join(out, "baseline", "run_config.yaml")) as fh:  # the config's own values
        assert yaml.safe_load(fh)["train"]["learning_rate"] == cfg["train"]["learning_rate"]
    assert "Held out: " in open(os.path.join(out, "sweep.html")).read()
    stamp = os.path.getmtime(os.path.join(out, "holdout", "baseline", "eval_results.json"))
    again = run_sweep(path)  # finished: the comparison is read back, not run again, and printed
    assert again.returncode == 0 and "(baseline/)" in again.stderr, again.stderr[-2000:]
    assert os.path.getmtime(os.path.join(out, "holdout", "baseline", "eval_results.json")) == stamp
