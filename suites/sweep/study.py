"""The Optuna study of a sweep: its storage, sampler and pruner, and the recovery of a trial whose sweep
process died (kill -9, a lost machine).

Storage: by default a journal file in OUTPUT_DIR (sweep.journal; several processes on one machine or on
a shared file system append to it under a lock); any URL Optuna's RDB storage takes otherwise
(postgresql://..., mysql://..., sqlite:///...), which workers on several machines share.
"""

from __future__ import annotations

import os
import socket

JOURNAL = "sweep.journal"
META = "sweep_command.json"  # config, overrides, storage, study: what `trainsuite report` reopens it with
OWNER = "worker"  # trial user attribute: "host:pid" of the sweep process running it
REQUEUED = "requeued"  # on a trial that died with its worker: its parameters were queued again
TRIAL_ENV = "TRAINSUITE_SWEEP_TRIAL"  # JSON {storage, study, trial_id}, read in the trial's process (reporter.py)
TRIAL_FILE = "sweep_trial.json"  # in a trial's run dir: what the pruner decided (reporter.py)


def sweep_metric(cfg) -> str:
    return cfg.sweep.metric or cfg.train.get("metric_for_best_model") or "loss"


def metric_key(metric: str) -> str:
    return metric if metric.startswith("eval_") else f"eval_{metric}"


def default_storage(output_dir: str) -> str:
    return os.path.join(os.path.abspath(output_dir), JOURNAL)


def storage(url: str):
    """A URL with a scheme goes to Optuna's RDB storage; a path is a journal file."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    if "://" in url:
        return _rdb_storage(url)
    return JournalStorage(JournalFileBackend(url))


def _rdb_storage(url: str, attempts: int = 5):
    """Optuna creates its tables on first use; workers started together on an empty database race on that
    (`type "studydirection" already exists`): the loser opens it again, once the winner's tables exist."""
    import random
    import time

    import optuna
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(url)
        except (ProgrammingError, IntegrityError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1) + random.random() * 0.2)


def pruner(name: str, after_step: int = 0):
    """The pruner; `after_step` (sweep.prune_after_step): the first optimizer step whose evaluation may prune."""
    import optuna

    if name == "median":
        # two finished trials give a median worth comparing with
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=after_step)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(1, after_step))
    return optuna.pruners.NopPruner()


def open_study(storage_url: str, name: str, sweep, direction: str, seed: int):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(storage=storage(storage_url), study_name=name, direction=direction,
                               sampler=optuna.samplers.TPESampler(seed=seed),
                               pruner=pruner(sweep.pruner, sweep.prune_after_step), load_if_exists=True)


def load_study(storage_url: str, name: str, pruner_name: str = "none", prune_after_step: int = 0):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=name, storage=storage(storage_url),
                             pruner=pruner(pruner_name, prune_after_step))


def me() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(owner: str) -> bool:
    """Whether the sweep process that took a trial still runs; a trial of another machine is taken
    as alive (only its own machine can tell)."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def requeue_orphans(study) -> list[int]:
    """A RUNNING trial whose sweep process on this machine is gone is marked failed and its parameters
    queued again (the next trial asked for gets them, under a new number and a new directory)."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    numbers = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.user_attrs.get(OWNER)
        if owner is None or _alive(owner):
            continue
        try:  # two workers starting together both see it: the storage lets one of them finish it
            study._storage.set_trial_user_attr(t._trial_id, REQUEUED, True)
            study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:
            continue
        study.enqueue_trial(t.params, skip_if_exists=False)
        numbers.append(t.number)
    return numbers
