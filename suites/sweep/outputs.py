"""What a sweep leaves in OUTPUT_DIR beside its trial-NNN/ runs: sweep.json (best parameters and metric,
every trial), best.yaml (the config with the best parameters, without its sweep block, ready for
`trainsuite train`) and sweep.html (one offline page: history, parallel coordinates, importances, and a
table linking each trial's report). Written at the end and by `trainsuite report OUTPUT_DIR`.
"""

from __future__ import annotations

import base64
import html
import json
import os

import yaml

from ..errors import UserError

SWEEP_JSON = "sweep.json"


def is_sweep_dir(path: str) -> bool:
    from .study import META

    return any(os.path.isfile(os.path.join(path, f)) for f in (SWEEP_JSON, META))


def best_trial(study):
    try:
        return study.best_trial
    except ValueError:  # no complete trial yet
        return None


def _trial_row(t) -> dict:
    value = t.value if t.value is not None else t.user_attrs.get("metric")
    state = {"FAIL": "failed"}.get(t.state.name, t.state.name.lower())
    return {"number": t.number, "state": state, "params": dict(t.params), "metric": value,
            "duration_s": t.user_attrs.get("duration_s"), "dir": t.user_attrs.get("dir"),
            "steps": sorted(t.intermediate_values), "requeued": bool(t.user_attrs.get("requeued")),
            "reason": t.user_attrs.get("reason")}


def summary(study, meta: dict) -> dict:
    best = best_trial(study)
    return {"study": meta["study"], "metric": meta["metric"], "direction": meta["direction"],
            "best": None if best is None else {"number": best.number, "metric": best.value,
                                               "params": dict(best.params), "dir": best.user_attrs.get("dir")},
            "trials": [_trial_row(t) for t in study.get_trials(deepcopy=False)
                       if not t.user_attrs.get("surplus") and t.state.name != "WAITING"]}


def write_all(out: str, study, meta: dict) -> dict:
    from .holdout import read

    data = summary(study, meta)
    held = read(out)
    if held:  # from the sweep's end; a best trial found since then is not in it yet
        held["stale"] = (held.get("best") or {}).get("number") != (data["best"] or {}).get("number")
        data["holdout"] = held
    _atomic(os.path.join(out, SWEEP_JSON), json.dumps(data, indent=2))
    if data["best"]:
        _atomic(os.path.join(out, "best.yaml"), best_yaml(meta, data["best"]["params"], out))
    _atomic(os.path.join(out, "sweep.html"), page(study, data))
    return data


def from_dir(out: str) -> str:
    """`trainsuite report OUTPUT_DIR` on a sweep: the study reopened from sweep_command.json."""
    from . import study as studies
    from .study import META

    try:
        with open(os.path.join(out, META)) as fh:
            meta = json.load(fh)
    except (OSError, ValueError):
        raise UserError(f"{out}: no readable {META}: not a sweep's output_dir") from None
    if not meta.get("storage"):
        raise UserError(f"{out}: the study's storage URL holds a password and was not saved; run "
                        f"`trainsuite sweep` again with --storage to rewrite sweep.json")
    study = studies.load_study(meta["storage"], meta["study"])
    write_all(out, study, meta)
    return os.path.join(out, "sweep.html")


def best_yaml(meta: dict, params: dict, out: str) -> str:
    from ..config.loader import apply_overrides, read_yaml
    from .space import override

    raw = apply_overrides(read_yaml(meta["config"]), [*meta["overrides"],
                                                      *(override(k, v) for k, v in params.items())])
    raw.pop("sweep", None)
    raw["output_dir"] = os.path.join(out, "best")
    base = os.path.dirname(meta["config"])
    def beside_config(p):  # relative to the original config, which best.yaml no longer sits beside
        if isinstance(p, dict):  # seq2seq's {source: FILE, target: FILE}
            return {k: beside_config(v) for k, v in p.items()}
        if isinstance(p, str) and not os.path.isabs(p) and os.path.exists(os.path.join(base, p)):
            return os.path.join(base, p)
        return p

    for section, key in (("data", "train"), ("data", "eval"), ("model", "name_or_path")):
        if isinstance(raw.get(section), dict) and key in raw[section]:
            raw[section][key] = beside_config(raw[section][key])
    head = (f"# the best trial of sweep {meta['study']!r} ({meta['metric']}), from {meta['config']}\n"
            f"# train it: trainsuite train {os.path.join(out, 'best.yaml')}\n")
    return head + yaml.safe_dump(raw, sort_keys=False)


def _atomic(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


# ------------------------------------------------------------------ the page

def page(study, data: dict) -> str:
    from .figures import history_png, importance, importance_png, parallel_png

    e = html.escape
    figs = [("Optimization history", history_png(data)), ("Parallel coordinates", parallel_png(data))]
    imp = importance(study)
    if imp:
        figs.append(("Parameter importances (fANOVA over the complete trials)", importance_png(imp)))
    body = []
    best = data["best"]
    if best:
        body.append(f"<p>best: trial {best['number']}, {e(data['metric'])} = {best['metric']:.4g}; "
                    f"{e(', '.join(f'{k}={v}' for k, v in best['params'].items()))}. "
                    f'<a href="best.yaml">best.yaml</a> trains it.</p>')
    if data.get("holdout"):
        body.append(_holdout_table(data["holdout"]))
    for title, png in figs:
        if png:
            body.append(f'<figure><img alt="{e(title)}" src="data:image/png;base64,'
                        f'{base64.b64encode(png).decode()}"><figcaption>{e(title)}</figcaption></figure>')
    keys = sorted({k for t in data["trials"] for k in t["params"]})
    head = "".join(f"<th>{e(h)}</th>" for h in ["trial", "state", data["metric"], *keys, "duration (s)", "report"])
    rows = []
    for t in data["trials"]:
        link = f'<a href="{e(t["dir"])}/report.html">{e(t["dir"])}</a>' if t["dir"] else ""
        cells = [t["number"], t["state"] + (" (re-queued)" if t["requeued"] else ""),
                 _fmt(t["metric"]), *(_fmt(t["params"].get(k)) for k in keys), _fmt(t["duration_s"])]
        rows.append("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in cells) + f"<td>{link}</td></tr>")
    body.append(f"<table><tr>{head}</tr>{''.join(rows)}</table>")
    style = ("body{font-family:sans-serif;margin:2em;max-width:1100px}figure{display:inline-block;margin:1em}"
             "img{max-width:520px}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;"
             "text-align:right}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>sweep {e(data['study'])}</title>"
            f"<style>{style}</style></head><body><h1>Sweep {e(data['study'])}</h1>{''.join(body)}</body></html>")


def _holdout_table(held: dict) -> str:
    e = html.escape
    rows = []
    for label, side in (("the config as written", held.get("baseline")),
                        (f"best trial {(held.get('best') or {}).get('number')}", held.get("best"))):
        if side:
            link = f'<a href="{e(side["dir"])}/report.html">{e(side["dir"])}</a>'
            rows.append(f"<tr><td>{e(label)}</td><td>{_fmt(side['eval'])}</td><td>{_fmt(side['holdout'])}</td>"
                        f"<td>{link}</td></tr>")
    note = [held["note"]] if held.get("note") else []
    if held.get("stale"):
        note.append("the best trial changed since this comparison; run `trainsuite sweep` again to redo it")
    return (f"<h2>Held out: {e(str(held['file']))}</h2><p>No trial was selected on this file; "
            f"{e(held['metric'])} on the eval split (where trials were selected) and on it:</p>"
            f"<table><tr><th>run</th><th>eval</th><th>held out</th><th>report</th></tr>{''.join(rows)}</table>"
            + "".join(f"<p>{e(n)}</p>" for n in note))


def _fmt(v) -> str:
    if v is None:
        return ""
    return f"{v:.4g}" if isinstance(v, float) else str(v)
