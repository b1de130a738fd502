"""The run report: one self-contained HTML page and the same figures as PNG files.

    write_report(run_dir)              -> RUN_DIR/report.html and RUN_DIR/figures/*.png
    write_comparison([run_dir, ...])   -> one page: curves overlaid, a table of final metrics

Everything comes from files a run already writes (trainer_state.json, in the run dir or in its latest
checkpoint-*, results.json, run_config.yaml, and the family's prediction files), so the report of an
interrupted run can be rebuilt. Images are inline data: URIs; the page loads nothing from the network.
"""

from __future__ import annotations

import base64
import glob
import html
import json
import logging
import os
import platform
import re
from dataclasses import dataclass, field

from ..config.redact import redact, redact_yaml_text
from ..errors import UserError
from .figures import colors, confusion_png, curves, is_metric

log = logging.getLogger("trainsuite")

ENV_FILE = "environment.json"
EVAL_RESULTS = "eval_results.json"  # `trainsuite eval` writes here, beside results.json (training)
PACKAGES = ("torch", "transformers", "trl", "peft", "datasets", "accelerate")
MAX_ROWS = 20
MAX_CHARS = 400


# ------------------------------------------------------------------ reading a run


@dataclass
class Run:
    path: str
    label: str
    log_history: list = field(default_factory=list)
    state_file: str | None = None
    results: dict = field(default_factory=dict)
    eval_results: dict = field(default_factory=dict)  # the latest `trainsuite eval` over this run
    config_text: str | None = None
    task: str | None = None
    environment: dict | None = None
    confusion: dict | None = None
    cls_predictions: list | None = None  # classification: eval rows with text, label, predicted, confidence
    generations: tuple | None = None  # (file name, column names, rows)


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def _read_jsonl(path, limit=None) -> list[dict]:
    rows = []
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except ValueError:
                        continue  # a half-written last line of an interrupted run
                if limit and len(rows) >= limit:
                    break
    except OSError:
        return []
    return rows


def _step_of(name: str) -> int:
    m = re.search(r"(\d+)(?!.*\d)", os.path.basename(name))
    return int(m.group(1)) if m else -1


def find_state(run_dir: str) -> str | None:
    """trainer_state.json of the run, or of its latest checkpoint when the run did not finish."""
    own = os.path.join(run_dir, "trainer_state.json")
    if os.path.isfile(own):
        return own
    ckpts = sorted(glob.glob(os.path.join(run_dir, "checkpoint-*", "trainer_state.json")),
                   key=lambda p: _step_of(os.path.dirname(p)))
    return ckpts[-1] if ckpts else None


def load_run(run_dir: str, label: str | None = None, log_history: list | None = None) -> Run:
    if not os.path.isdir(run_dir):
        raise UserError(f"report: {run_dir}: no such directory")
    run = Run(path=run_dir, label=label or os.path.basename(os.path.normpath(run_dir)))
    run.state_file = find_state(run_dir)
    if log_history is not None:
        run.log_history = list(log_history)
    elif run.state_file:
        run.log_history = (_read_json(run.state_file) or {}).get("log_history", [])
    run.results = redact(_read_json(os.path.join(run_dir, "results.json")) or {}, numbers=False)
    run.eval_results = redact(_read_json(os.path.join(run_dir, EVAL_RESULTS)) or {}, numbers=False)
    if run.state_file is None and not run.results and not run.eval_results and log_history is None:
        raise UserError(f"report: {run_dir}: no trainer_state.json (nor in a checkpoint-*) and no "
                        "results.json; is it a trainsuite output_dir?")
    cfg_path = os.path.join(run_dir, "run_config.yaml")
    if os.path.isfile(cfg_path):
        with open(cfg_path, encoding="utf-8") as fh:
            run.config_text = redact_yaml_text(fh.read())  # also a run written before redaction
        m = re.search(r"^task:\s*(\w+)", run.config_text, re.M)
        run.task = m.group(1) if m else None
    run.task = run.results.get("task") or run.task
    run.environment = redact(_read_json(os.path.join(run_dir, ENV_FILE)))
    run.confusion = _read_json(os.path.join(run_dir, "confusion_matrix.json"))
    preds = os.path.join(run_dir, "eval_predictions.jsonl")
    if os.path.isfile(preds):
        run.cls_predictions = _read_jsonl(preds)
    run.generations = _generations(run_dir)
    return run


def _generations(run_dir: str):
    steps = sorted(glob.glob(os.path.join(run_dir, "predictions", "eval_step*.jsonl")), key=_step_of)
    if steps:  # seq2seq: the latest evaluation
        return (os.path.relpath(steps[-1], run_dir), ("source", "reference", "hypothesis"),
                _read_jsonl(steps[-1], MAX_ROWS))
    sft = os.path.join(run_dir, "eval_generations.jsonl")
    if not os.path.isfile(sft):
        return None
    rows = _read_jsonl(sft, MAX_ROWS)
    start = os.path.join(run_dir, "eval_generations_start.jsonl")  # train.eval_on_start (suites/sft.py)
    before = _read_jsonl(start, MAX_ROWS) if os.path.isfile(start) else []
    if before and [r.get("prompt") for r in before] == [r.get("prompt") for r in rows]:
        # the same prompts: their replies before training beside those after it
        return ("eval_generations.jsonl", ("prompt", "reference", "before_training", "after_training"),
                [{"prompt": _tail(r.get("prompt")), "reference": r.get("reference"),
                  "before_training": b.get("prediction"), "after_training": r.get("prediction")}
                 for r, b in zip(rows, before)])
    return "eval_generations.jsonl", ("prompt", "reference", "prediction"), rows


def _tail(text, n=MAX_CHARS // 2) -> str:
    """The end of a chat prompt: the user's question, not the system prompt a template put in front."""
    text = "" if text is None else str(text)
    return text if len(text) <= n else "… " + text[-n:]


def environment() -> dict:
    from importlib import metadata

    env = {"python": platform.python_version(), "platform": platform.platform()}
    for name in PACKAGES:
        try:
            env[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            env[name] = "not installed"
    try:
        import torch

        if torch.cuda.is_available():
            n = torch.cuda.device_count()
            env["device"] = f"{n} x {torch.cuda.get_device_name(0)}"
        else:
            env["device"] = f"cpu ({os.cpu_count()} cores)"
    except Exception:  # a report must not fail on device probing
        env["device"] = "unknown"
    env["world_size"] = os.environ.get("WORLD_SIZE", "1")
    return redact(env)


# ------------------------------------------------------------------ HTML

CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:0;background:#f5f6f8;color:#1f2328}
main{max-width:1120px;margin:0 auto;padding:20px 28px 48px}
h1{font-size:22px;margin:4px 0 2px} h2{font-size:17px;margin:28px 0 10px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
.sub{color:#57606a;font-size:13px;margin-bottom:8px}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:14px 0}
.card{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:8px 14px;min-width:120px}
.card .k{font-size:11px;color:#57606a;text-transform:uppercase;letter-spacing:.03em} .card .v{font-size:20px;font-weight:600}
.figs{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:14px} .figs figure.wide{grid-column:1 / -1}
figure{background:#fff;border:1px solid #d0d7de;border-radius:6px;margin:0;padding:8px;max-width:100%}
figure img{max-width:100%;height:auto;display:block} figcaption{font-size:12px;color:#57606a;margin-top:4px}
table{border-collapse:collapse;background:#fff;font-size:13px;margin:4px 0}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f0f2f4} td.num{text-align:right;font-variant-numeric:tabular-nums}
td.text{white-space:pre-wrap;max-width:420px;word-break:break-word}
tr.wrong td{background:#fff3f2} .ok{color:#1a7f37} .bad{color:#cf222e}
pre{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:10px;font-size:12px;max-height:420px;overflow:auto}
.cols{display:flex;gap:24px;flex-wrap:wrap;align-items:flex-start} .note{color:#57606a;font-size:13px}
"""


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _fmt(v) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f"{v:.3e}"
        return f"{v:.4f}".rstrip("0").rstrip(".") if abs(v) < 1000 else f"{v:,.1f}"
    return str(v)


def _clip(text, n=MAX_CHARS) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= n else text[:n] + " …"


WIDE = ("throughput.png", "eval_metrics.png")


def _img(name: str, title: str, png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    wide = ' class="wide"' if name in WIDE else ""
    return (f'<figure{wide}><img alt="{_e(title)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_e(title)} · {_e(name)}</figcaption></figure>")


def _table(header, rows, num_cols=(), row_classes=None) -> str:
    out = ["<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>"]
    for n, row in enumerate(rows):
        cls = f' class="{row_classes[n]}"' if row_classes and row_classes[n] else ""
        cells = []
        for i, c in enumerate(row):
            kind = "num" if i in num_cols else ("text" if isinstance(c, str) and len(c) > 40 else "")
            cells.append(f'<td class="{kind}">{_e(c)}</td>' if kind else f"<td>{_e(c)}</td>")
        out.append(f"<tr{cls}>" + "".join(cells) + "</tr>")
    return "\n".join(out) + "</table>"


def _page(title: str, sub: str, body: list) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title><style>{CSS}</style></head><body><main>"
            f"<h1>{_e(title)}</h1><div class=\"sub\">{sub}</div>\n" + "\n".join(body) + "</main></body></html>\n")


HEADLINE = ("eval_accuracy", "eval_f1_macro", "eval_bleu", "eval_chrf", "eval_rougeL", "eval_pearson",
            "eval_perplexity", "eval_loss", "train_loss", "train_runtime_s")


def _final_metrics(run: Run) -> dict:
    """Final metrics: results.json, else the last eval line of the log, else a later eval's."""
    if run.results:
        return {k: v for k, v in run.results.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if not run.log_history and run.eval_results:  # an eval of a model trained elsewhere
        return {k: v for k, v in run.eval_results.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    out = {}
    for row in run.log_history:
        out.update({k: v for k, v in row.items() if k.startswith(("eval_", "train_")) and isinstance(v, (int, float))})
    return out


def _status(run: Run) -> str:
    state = _read_json(run.state_file) if run.state_file else None
    parts = []
    if state:
        step, max_steps = state.get("global_step"), state.get("max_steps")
        parts.append(f"step {step} of {max_steps}" if max_steps else f"step {step}")
        if run.state_file and os.path.basename(os.path.dirname(run.state_file)).startswith("checkpoint-"):
            parts.append(f"read from {os.path.relpath(run.state_file, run.path)} (the run did not finish)")
        if state.get("best_metric") is not None and state.get("best_model_checkpoint"):
            parts.append(f"best metric {_fmt(state['best_metric'])} at {os.path.basename(state['best_model_checkpoint'])}")
    return " · ".join(parts)


def _family_section(run: Run) -> list:
    body = []
    if run.confusion:
        png = confusion_png(run.confusion)
        if png:
            body.append(("confusion_matrix.png", "Confusion matrix (eval, last evaluation)", png))
    return body


def _worst_examples(rows: list) -> str:
    if rows and all("error" in r for r in rows):  # regression: the largest errors first
        shown = sorted(rows, key=lambda r: -abs(r["error"]))[:MAX_ROWS]
        note = (f'<p class="note">The {len(shown)} of {len(rows)} eval examples with the largest error '
                "(predicted minus true value).</p>")
        return note + _table(("text", "true value", "predicted", "error"),
                             [(_clip(r.get("text")), _fmt(r.get("label")), _fmt(r.get("predicted")), _fmt(r["error"]))
                              for r in shown], num_cols=(1, 2, 3))
    scored = [r for r in rows if "p_label" in r]
    scored.sort(key=lambda r: r["p_label"])
    wrong = sum(1 for r in rows if r.get("label") != r.get("predicted"))
    shown = scored[:MAX_ROWS]
    table_rows = [(_clip(r.get("text")), r.get("label"), r.get("predicted"), _fmt(r.get("confidence")),
                   _fmt(r["p_label"])) for r in shown]
    classes = ["" if r.get("label") == r.get("predicted") else "wrong" for r in shown]
    note = (f'<p class="note">{wrong} of {len(rows)} eval examples misclassified; the {len(table_rows)} below '
            "have the lowest probability on their true label (misclassified rows shaded).</p>")
    return note + _table(("text", "true label", "predicted", "confidence", "p(true label)"), table_rows,
                         num_cols=(3, 4), row_classes=classes)


def _generations_table(gen) -> str:
    name, cols, rows = gen
    if not rows:
        return f'<p class="note">{_e(name)} is empty.</p>'
    body = [tuple(_clip(r.get(c)) for c in cols) for r in rows]
    return (f'<p class="note">The first {len(rows)} rows of {_e(name)} (the latest evaluation).</p>'
            + _table(cols, body))


def render_run(run: Run, figures: list) -> str:
    metrics = _final_metrics(run)
    cards = [k for k in HEADLINE if k in metrics][:6]
    sub = " · ".join(_e(x) for x in (run.task or "run", run.results.get("model"), _status(run)) if x)
    body = ['<div class="cards">' + "".join(
        f'<div class="card"><div class="k">{_e(k)}</div><div class="v">{_e(_fmt(metrics[k]))}</div></div>'
        for k in cards) + "</div>"]
    body.append("<h2>Curves</h2>")
    curves = [f for f in figures if f[0] != "confusion_matrix.png"]
    body.append('<div class="figs">' + "".join(_img(*f) for f in curves) + "</div>" if curves
                else '<p class="note">No training log lines yet (trainer_state.json has no log_history).</p>')
    if run.task == "classification" or run.confusion or run.cls_predictions:
        body.append("<h2>Classification</h2>")
        cm = [f for f in figures if f[0] == "confusion_matrix.png"]
        body.append('<div class="cols">' + "".join(_img(*f) for f in cm) + "</div>")
        if run.cls_predictions:
            body.append("<h3>Worst-classified eval examples</h3>" + _worst_examples(run.cls_predictions))
    if run.generations:
        body.append("<h2>Sample generations</h2>" + _generations_table(run.generations))
    body.append("<h2>Final metrics</h2>" + _table(("metric", "value"), [(k, _fmt(v)) for k, v in sorted(metrics.items())],
                                                  num_cols=(1,)))
    if run.eval_results:
        ev = run.eval_results
        numbers = [(k, _fmt(v)) for k, v in sorted(ev.items())
                   if isinstance(v, (int, float)) and not isinstance(v, bool)]
        body.append(f"<h2>Evaluation ({EVAL_RESULTS})</h2>"
                    f'<p class="note">trainsuite eval of {_e(ev.get("model") or "?")}, after training</p>'
                    + _table(("metric", "value"), numbers, num_cols=(1,)))
    env = run.environment
    env_note = ""
    if env is None:
        env, env_note = environment(), '<p class="note">Not recorded by the run: this machine\'s, at report time.</p>'
    body.append('<div class="cols"><div><h2>Environment</h2>' + env_note
                + _table(("component", "version"), list(env.items())) + "</div></div>")
    body.append("<h2>Config</h2>" + (f"<pre>{_e(run.config_text)}</pre>" if run.config_text
                                      else '<p class="note">No run_config.yaml in the run directory.</p>'))
    return _page(f"trainsuite report: {run.label}", sub, body)


def render_comparison(runs: list, figures: list) -> str:
    finals = [_final_metrics(r) for r in runs]
    keys = [k for k in HEADLINE if any(k in f for f in finals)]
    keys += sorted({k for f in finals for k in f if is_metric(k) and k not in keys})
    keys += [k for k in ("params_total", "params_trainable", "num_train_samples") if any(k in f for f in finals)]
    rows = [(k, *(_fmt(f[k]) if k in f else "" for f in finals)) for k in keys]
    body = ['<h2>Final metrics</h2>' + _table(("metric", *(r.label for r in runs)), rows,
                                               num_cols=tuple(range(1, len(runs) + 1)))]
    body.append("<h2>Runs</h2>" + _table(("run", "task", "model", "directory", "status"),
                                        [(r.label, r.task or "", r.results.get("model") or "", r.path, _status(r))
                                         for r in runs]))
    body.append("<h2>Curves</h2>" + '<div class="figs">' + "".join(_img(*f) for f in figures) + "</div>")
    return _page(f"trainsuite comparison: {len(runs)} runs", _e(", ".join(r.label for r in runs)), body)


# ------------------------------------------------------------------ entry points


def _check_output(path: str) -> None:
    """--output must name a file that can be written, before any figure is drawn or saved."""
    if os.path.isdir(path):
        raise UserError(f"report: --output {path} is a directory; give the page's file name, e.g. "
                        f"{os.path.join(path, 'report.html')}")


def _write(path: str, text: str) -> None:
    tmp = path + ".tmp"
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        if os.path.isfile(tmp):
            os.remove(tmp)
        raise UserError(f"report: cannot write {path}: {exc.strerror or exc}") from None


def _save_figures(figures: list, folder: str) -> None:
    try:
        os.makedirs(folder, exist_ok=True)
        for name, _, png in figures:
            with open(os.path.join(folder, name), "wb") as fh:
                fh.write(png)
    except OSError as exc:
        raise UserError(f"report: cannot write the figures to {folder}: {exc.strerror or exc}") from None


def _figures_dir(output: str, default: bool) -> str:
    """RUN_DIR/figures for a run's own report; OUTPUT-STEM_figures beside any other page."""
    if default:
        return os.path.join(os.path.dirname(os.path.abspath(output)), "figures")
    return os.path.splitext(os.path.abspath(output))[0] + "_figures"


def write_report(run_dir: str, output: str | None = None, log_history: list | None = None) -> str:
    """RUN_DIR/report.html (or `output`) and its PNGs in RUN_DIR/figures; returns the page's path."""
    run = load_run(run_dir, log_history=log_history)
    default = output is None
    output = output or os.path.join(run_dir, "report.html")
    _check_output(output)
    figures = curves([run], colors(1)) + _family_section(run)
    _save_figures(figures, _figures_dir(output, default))
    if default:  # a run's confusion matrix also beside its json (drawn here once, not at each evaluation)
        _save_figures([f for f in figures if f[0] == "confusion_matrix.png"], run_dir)
    _write(output, render_run(run, figures))
    return output


def _labels(paths: list) -> list:
    """Short distinct names: the last path component, or more of the path where those collide."""
    parts = [os.path.normpath(os.path.abspath(p)).split(os.sep) for p in paths]
    for depth in range(1, max(len(p) for p in parts) + 1):
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    return [f"{i}:{p}" for i, p in enumerate(paths)]


def write_comparison(run_dirs: list, output: str) -> str:
    runs = [load_run(d, label) for d, label in zip(run_dirs, _labels(run_dirs))]
    _check_output(output)
    figures = curves(runs, colors(len(runs)))
    _save_figures(figures, _figures_dir(output, False))
    _write(output, render_comparison(runs, figures))
    return output


def after_run(output_dir: str, log_history: list | None = None, record_environment: bool = False) -> str | None:
    """The end-of-run report (rank 0 only); a failure is logged, never fails the run."""
    if int(os.environ.get("RANK", "0")) != 0:
        return None
    try:
        if record_environment:
            with open(os.path.join(output_dir, ENV_FILE), "w") as fh:
                json.dump(environment(), fh, indent=1)
        path = write_report(output_dir, log_history=log_history)
        log.info("report: %s", path)
        return path
    except Exception as exc:  # noqa: BLE001 - the model and results are saved; the report is extra
        log.warning("report: could not write report.html (%s: %s); rebuild it with `trainsuite report %s`",
                    type(exc).__name__, exc, output_dir)
        return None
