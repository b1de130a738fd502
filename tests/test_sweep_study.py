"""suites/sweep/study.py without training: an orphaned trial (its sweep process gone) is failed and its
parameters queued once, even when two workers look at the same time; a live worker's trial is left."""

from __future__ import annotations

import os
import socket

import optuna
import pytest
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from conftest import write_yaml
from suites.sweep import study as studies

DEAD_PID = 2 ** 22 + 12345  # above Linux's pid_max default: no such process


@pytest.fixture
def study(tmp_path):
    return optuna.create_study(storage=studies.storage(str(tmp_path / "s.journal")), study_name="s")


def _running(study, owner):
    trial = study.ask()
    trial.set_user_attr(studies.OWNER, owner)
    trial.suggest_float("lr", 1e-5, 1e-2, log=True)
    return trial


def test_an_orphaned_trial_is_failed_and_its_parameters_queued_once(study, tmp_path):
    dead = _running(study, f"{socket.gethostname()}:{DEAD_PID}")
    alive = _running(study, studies.me())
    elsewhere = _running(study, f"another-host-{socket.gethostname()}:{DEAD_PID}")
    assert studies.requeue_orphans(study) == [dead.number]
    # a second worker that looked at the same time: the storage refuses to finish it twice
    other = optuna.load_study(study_name="s", storage=studies.storage(str(tmp_path / "s.journal")))
    with pytest.raises(UpdateFinishedTrialError):
        other._storage.set_trial_state_values(dead._trial_id, TrialState.FAIL)
    assert studies.requeue_orphans(other) == []
    states = {t.number: t.state for t in study.get_trials()}
    assert states[dead.number] == TrialState.FAIL
    assert states[alive.number] == states[elsewhere.number] == TrialState.RUNNING
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert len(waiting) == 1
    again = study.ask()  # the next trial gets the orphan's parameters
    assert again.suggest_float("lr", 1e-5, 1e-2, log=True) == dead.params["lr"]


def test_storage_urls():
    assert isinstance(studies.storage("sqlite://"), optuna.storages.RDBStorage)
    assert studies.default_storage("runs/x").endswith("runs/x/sweep.journal")
    assert isinstance(studies.pruner("none"), optuna.pruners.NopPruner)
    assert isinstance(studies.pruner("hyperband"), optuna.pruners.HyperbandPruner)


def test_the_progress_line_and_its_eta_count_the_other_workers(study, caplog):
    """One finished trial of 6, two trials running in other workers: the 5 left take ceil(5 / 3) rounds of
    the mean trial time (60 s) here."""
    from suites.sweep.trial import Outcome
    from suites.sweep.worker import _progress

    done = study.ask()
    done.suggest_float("lr", 1e-5, 1e-2, log=True)
    study.tell(done, 0.5)
    for owner in ("a:1", "b:2"):
        _running(study, owner)
    meta = {"metric": "eval_loss", "trials": 6}
    with caplog.at_level("INFO", logger="trainsuite"):
        _progress(study, 0, {"lr": 0.001}, Outcome("complete", 0.5), meta, [60.0])
        _progress(study, 4, {"lr": 0.01}, Outcome("failed", None, "exit code 1"), meta, [60.0])
    first, second = caplog.records
    assert first.levelname == "INFO" and first.getMessage() == (
        "sweep: trial 0 complete: lr=0.001  eval_loss=0.5  best 0.5 (trial 0)  [1/6 finished, ETA 2m00s]")
    assert second.levelname == "WARNING" and "trial 4 failed: lr=0.01  exit code 1" in second.getMessage()


def test_prune_after_step_keeps_early_evaluations_from_pruning(tmp_path):
    """sweep.prune_after_step: a trial far below the median is not pruned at step 4 with 8 set, is at 8."""
    for after, pruned_at_4 in ((0, True), (8, False)):
        s = optuna.create_study(storage=studies.storage(str(tmp_path / f"p{after}.journal")), study_name="p",
                                direction="maximize", pruner=studies.pruner("median", after))
        for _ in range(2):  # two finished trials: a median to compare with
            t = s.ask()
            for step in (4, 8):
                t.report(0.9, step)
            s.tell(t, 0.9)
        t = s.ask()
        t.report(0.1, 4)
        assert bool(t.should_prune()) == pruned_at_4
        t.report(0.1, 8)
        assert bool(t.should_prune())
    hyperband = studies.pruner("hyperband", 8)
    assert hyperband._min_resource == 8 and studies.pruner("hyperband")._min_resource == 1


def test_a_negative_prune_after_step_is_refused(tmp_path, cls_config):
    from suites.run.cli import run

    cls_config["sweep"] = {"trials": 1, "prune_after_step": -1,
                           "space": {"train.learning_rate": {"log_uniform": [1e-4, 1e-2]}}}
    assert run(["sweep", write_yaml(tmp_path / "c.yaml", cls_config)]) == 2
    assert not os.path.exists(cls_config["output_dir"])
