"""The sweep's fair comparison. Trials are selected on data.eval, so the best trial's eval score is the
optimistic one; `sweep.holdout` names a file no trial was selected on. At the end the best trial and the
config as written (the baseline: the swept keys at the config's own values, trained once in
OUTPUT_DIR/baseline/, outside the study) are both evaluated on it with `trainsuite eval`, each in its own
process. OUTPUT_DIR/holdout.json keeps the result; outputs.py puts it in sweep.json and sweep.html.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

from . import trial as trials
from .space import override

log = logging.getLogger("trainsuite")

HOLDOUT_JSON = "holdout.json"
BASELINE = "baseline"
EVALS = "holdout"  # OUTPUT_DIR/holdout/<run>/eval_results.json: each model's scores on the held-out file


def compare(cfg, config_path: str, overrides: list[str], meta: dict, out: str, best: dict | None) -> dict | None:
    """best: sweep.json's best trial ({number, metric, params, dir}). None when no holdout is set."""
    holdout = cfg.sweep.holdout
    if holdout is None:
        return None
    key = meta["metric"]
    done = read(out)
    if done and done.get("file") == holdout and (done.get("best") or {}).get("number") == (best or {}).get("number") \
            and _scored(done):
        return done  # a finished sweep run again: nothing new to evaluate
    result = {"file": holdout, "metric": key, "baseline": None, "best": None, "note": None}
    if best is None:
        result["note"] = "no complete trial: nothing to compare"
        return _save(out, result)
    base_dir = os.path.join(out, BASELINE)
    base_eval = trials.read_json(os.path.join(base_dir, "results.json")).get(key)
    if base_eval is None:
        log.info("sweep: training the config as written (the baseline) in %s", base_dir)
        outcome = trials.run(config_path, overrides, base_dir, None, key, cfg.sweep.nproc)
        base_eval = outcome.value
        if outcome.state != "complete":
            result["note"] = f"the baseline run failed ({outcome.reason})"
            return _save(out, result)
    result["baseline"] = {"dir": BASELINE, "eval": base_eval,
                          "holdout": _evaluate(config_path, overrides, out, BASELINE, holdout, key)}
    best_dir = os.path.join(out, best["dir"] or "")
    if best["dir"] and os.path.isfile(os.path.join(best_dir, "results.json")):
        params = [override(k, v) for k, v in best["params"].items()]
        result["best"] = {"number": best["number"], "dir": best["dir"], "eval": best["metric"],
                          "holdout": _evaluate(config_path, [*overrides, *params], out, best["dir"], holdout, key)}
    else:
        result["best"] = {"number": best["number"], "dir": best["dir"], "eval": best["metric"], "holdout": None}
        result["note"] = (f"the best trial's directory {best['dir']} is not on this machine: run "
                          f"`trainsuite sweep` again where it ran to score it on the held-out file")
    return _save(out, result)


def _evaluate(config_path, overrides, out, run, holdout, key):
    """`trainsuite eval` of OUTPUT_DIR/<run>'s model on the held-out file, in its own process (the sweep
    process stays free of torch); its scores land in OUTPUT_DIR/holdout/<run>/eval_results.json."""
    where = os.path.join(out, EVALS, run)
    os.makedirs(where, exist_ok=True)
    cmd = [sys.executable, "-m", "suites.run.cli", "eval", config_path, *overrides,
           f"model.name_or_path={json.dumps(os.path.join(out, run))}", override("data.eval", holdout),
           f"output_dir={json.dumps(where)}", "--quiet"]
    with open(where + ".log", "wb") as fh:
        code = subprocess.call(cmd, stdout=fh, stderr=subprocess.STDOUT, preexec_fn=trials.dies_with_parent())
    value = trials.read_json(os.path.join(where, "eval_results.json")).get(key) if code == 0 else None
    if value is None:
        log.warning("sweep: the held-out evaluation of %s failed (exit code %d, see %s.log)", run, code,
                    os.path.relpath(where, out))
    return value


def _scored(result: dict) -> bool:
    return all((result.get(side) or {}).get("holdout") is not None for side in ("baseline", "best"))


def read(out: str) -> dict | None:
    return trials.read_json(os.path.join(out, HOLDOUT_JSON)) or None


def _save(out: str, result: dict) -> dict:
    tmp = os.path.join(out, HOLDOUT_JSON + ".tmp")
    with open(tmp, "w") as fh:
        json.dump(result, fh, indent=2)
    os.replace(tmp, os.path.join(out, HOLDOUT_JSON))
    return result


def lines(result: dict) -> list[str]:
    """What the sweep prints at its end."""
    file = result["file"]
    if isinstance(file, str) and os.path.abspath(file).startswith(os.getcwd() + os.sep):
        file = os.path.relpath(file)
    if result.get("note") and not _scored(result):
        return [f"sweep: held-out comparison on {file}: {result['note']}"]
    base, best, key = result["baseline"], result["best"], result["metric"]
    delta = best["holdout"] - base["holdout"]
    return [f"sweep: held-out {file} ({key}; no trial was selected on it):",
            f"sweep:   the config as written (baseline/): {_fmt(base['holdout'])}  (eval {_fmt(base['eval'])})",
            f"sweep:   best trial {best['number']} ({best['dir']}/): {_fmt(best['holdout'])}  "
            f"(eval {_fmt(best['eval'])})  {delta:+.4g} over the baseline"]


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4g}"
