"""`trainsuite sweep`: checks the config and its space, opens (or continues) the study, then runs trials
until the study holds sweep.trials finished ones (or sweep.timeout_s passed), one line per trial.
With --workers K, K worker processes share the study (the journal file or the database).
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import time

from ..errors import UserError
from . import holdout, outputs, space, study as studies, trial as trials

log = logging.getLogger("trainsuite")  # --quiet (warnings only) keeps a failed or re-queued trial's line

SURPLUS = "surplus"  # a trial asked for after the study already held enough (another worker was quicker)
WORKER_ENV = "TRAINSUITE_SWEEP_WORKER"  # set in the processes of --workers K
LOWER_IS_BETTER = ("loss", "perplexity", "mse", "mae", "rmse", "runtime")


def direction_of(cfg, metric: str) -> str:
    if cfg.sweep.direction:
        return cfg.sweep.direction
    if cfg.train.get("greater_is_better") is not None and metric == cfg.train.get("metric_for_best_model"):
        return "maximize" if cfg.train["greater_is_better"] else "minimize"
    name = metric.removeprefix("eval_")
    return "minimize" if any(name.endswith(w) for w in LOWER_IS_BETTER) else "maximize"


def prepare(config_path: str, overrides: list[str], trials_n: int | None):
    """The config through the ordinary checks, then every range of its space: all before any trial."""
    from .. import config

    cfg = config.load(config_path, overrides)
    if cfg.sweep is None:
        raise UserError(f"{config_path}: no 'sweep:' block (docs/sweep.md shows one)")
    if trials_n is not None:
        cfg.sweep.trials = trials_n
    if cfg.sweep.trials < 1:
        raise UserError(f"config: 'sweep.trials' must be at least 1, got {cfg.sweep.trials}")
    if cfg.sweep.nproc < 1:
        raise UserError(f"config: 'sweep.nproc' must be at least 1, got {cfg.sweep.nproc}")
    if cfg.sweep.prune_after_step < 0:
        raise UserError(f"config: 'sweep.prune_after_step' must be 0 or more, got {cfg.sweep.prune_after_step}")
    params = space.parse(cfg.sweep.space)
    space.check(config_path, overrides, params)
    _check_holdout(cfg, config_path, overrides)
    return cfg, params


def _check_holdout(cfg, config_path, overrides) -> None:
    """sweep.holdout gets the checks data.eval gets (the file, its columns), and must not be a split the
    trials train or are selected on."""
    from .. import config
    from ..errors import MISTAKES

    held = cfg.sweep.holdout
    if held is None:
        return
    if held in (cfg.data.eval, cfg.data.train):
        split = "data.eval: the trials are selected on it" if held == cfg.data.eval else "data.train"
        raise UserError(f"config: 'sweep.holdout' is {split}; name a file no trial sees")
    try:
        config.load(config_path, [*overrides, space.override("data.eval", held)])
    except MISTAKES as exc:
        raise UserError(f"config: 'sweep.holdout' {held!r}: {exc}") from None


def sweep(config_path: str, overrides: list[str], trials_n=None, storage=None, study_name=None,
          workers: int = 1, quiet: bool = False) -> dict:
    cfg, params = prepare(config_path, overrides, trials_n)
    if workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    out = os.path.abspath(cfg.output_dir)
    os.makedirs(out, exist_ok=True)
    metric = studies.sweep_metric(cfg)
    if storage and "://" not in storage:
        storage = os.path.abspath(storage)  # a journal file: the same one from any folder
    meta = {"config": os.path.abspath(config_path), "overrides": list(overrides),
            "storage": storage or studies.default_storage(out), "study": study_name or os.path.basename(out),
            "metric": studies.metric_key(metric), "direction": direction_of(cfg, metric), "trials": cfg.sweep.trials,
            "seed": cfg.sweep.seed if cfg.sweep.seed is not None else cfg.seed}
    study = studies.open_study(meta["storage"], meta["study"], cfg.sweep, meta["direction"], meta["seed"])
    _write_meta(out, meta)
    if workers > 1:
        _run_workers(config_path, overrides, meta, workers, quiet)
        study = studies.open_study(meta["storage"], meta["study"], cfg.sweep, meta["direction"], meta["seed"])
    else:
        work(study, cfg, params, config_path, overrides, meta, out)
    if os.environ.get(WORKER_ENV):  # one of --workers K: the command that started it writes the outputs
        return outputs.summary(study, meta)
    result = holdout.compare(cfg, config_path, overrides, meta, out, outputs.summary(study, meta)["best"])
    for line in holdout.lines(result) if result else []:
        log.info("%s", line)
    return outputs.write_all(out, study, meta)


def _write_meta(out: str, meta: dict) -> None:
    from ..config.redact import scrub

    # a database password stays out of files: `trainsuite report` then reads the study from sweep.json
    safe = {**meta, "storage": meta["storage"] if scrub(meta["storage"]) == meta["storage"] else None}
    with open(os.path.join(out, studies.META), "w") as fh:
        json.dump(safe, fh, indent=2)


def _run_workers(config_path, overrides, meta, workers: int, quiet: bool) -> None:
    cmd = [sys.executable, "-m", "suites.run.cli", "sweep", config_path, *overrides, "--workers", "1",
           "--storage", meta["storage"], "--study", meta["study"], "--trials", str(meta["trials"]),
           *(["--quiet"] if quiet else [])]
    procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, env={**os.environ, WORKER_ENV: "1"},
                              preexec_fn=trials.dies_with_parent())
             for _ in range(workers)]
    for p in procs:
        p.wait()


def work(study, cfg, params, config_path, overrides, meta, out) -> None:
    """This process's trials, one at a time, until the study holds enough."""
    from optuna.trial import TrialState

    for number in studies.requeue_orphans(study):
        log.warning("sweep: trial %d: its sweep process died while it ran; failed, its parameters queued again",
                    number)
    target, start, durations = meta["trials"], time.monotonic(), []
    timeout = cfg.sweep.timeout_s
    while True:
        finished, running = counted(study)
        if finished + running >= target:
            break
        if timeout is not None and time.monotonic() - start >= timeout:
            log.info("sweep: sweep.timeout_s (%g s) reached: no new trial (%d/%d finished)", timeout, finished,
                     target)
            break
        trial = study.ask()
        trial.set_user_attr(studies.OWNER, studies.me())
        if _ahead(study, trial.number) >= target:  # another worker asked first for the last one
            trial.set_user_attr(SURPLUS, True)
            study.tell(trial, state=TrialState.FAIL)
            break
        values = {p.key: p.suggest(trial) for p in params}
        run_dir = trials.trial_dir(out, trial.number)
        trial.set_user_attr("dir", os.path.basename(run_dir))
        env_value = json.dumps({"storage": meta["storage"], "study": meta["study"], "trial_id": trial._trial_id})
        began = time.monotonic()
        try:
            outcome = trials.run(config_path, [*overrides, *(space.override(k, v) for k, v in values.items())],
                                 run_dir, env_value, meta["metric"], cfg.sweep.nproc)
        except KeyboardInterrupt:  # Ctrl-C: this trial is queued again for the next `trainsuite sweep`
            trial.set_user_attr(studies.REQUEUED, True)
            study.tell(trial, state=TrialState.FAIL)
            study.enqueue_trial(values, skip_if_exists=False)
            raise KeyboardInterrupt(f"trial {trial.number} stopped and queued again; run the same command "
                                    f"to continue the sweep") from None
        trial.set_user_attr("duration_s", round(time.monotonic() - began, 2))
        if outcome.value is not None:
            trial.set_user_attr("metric", outcome.value)
        if outcome.state == "complete":
            study.tell(trial, outcome.value)
        else:
            if outcome.reason:
                trial.set_user_attr("reason", outcome.reason)
            study.tell(trial, state=TrialState.PRUNED if outcome.state == "pruned" else TrialState.FAIL)
        durations.append(time.monotonic() - began)
        _progress(study, trial.number, values, outcome, meta, durations)


def counted(study) -> tuple[int, int]:
    finished, running = 0, 0
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get(studies.REQUEUED) or t.user_attrs.get(SURPLUS):
            continue
        if t.state.name == "RUNNING":
            running += 1
        elif t.state.is_finished():
            finished += 1
    return finished, running


def _ahead(study, number: int) -> int:
    """Trials that count toward sweep.trials and were asked for before `number`."""
    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.number < number and t.state.name != "WAITING"
               and not t.user_attrs.get(studies.REQUEUED) and not t.user_attrs.get(SURPLUS))


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _progress(study, number, values, outcome, meta, durations) -> None:
    finished, running = counted(study)  # running: other workers' trials, which go on beside this one
    best = outputs.best_trial(study)
    best_text = f"best {_fmt(best.value)} (trial {best.number})" if best else "best -"
    metric = f"{meta['metric']}={_fmt(outcome.value)}" if outcome.value is not None else outcome.reason
    left = max(0, meta["trials"] - finished)
    eta = _duration(sum(durations) / len(durations) * math.ceil(left / (running + 1))) if left else "0s"
    params = " ".join(f"{k}={_fmt(v)}" for k, v in values.items())
    line = (f"sweep: trial {number} {outcome.state}: {params}  {metric}  {best_text}  "
            f"[{finished}/{meta['trials']} finished, ETA {eta}]")
    log.log(logging.WARNING if outcome.state == "failed" else logging.INFO, "%s", line)


def _duration(s: float) -> str:
    s = int(math.ceil(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"

