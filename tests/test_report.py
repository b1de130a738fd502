"""Run visibility: report.html after a run (inline figures, metrics, no network), rebuilding it from the
files of an interrupted run, comparing runs, starter configs, report_to checks, --quiet."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import types

import pytest
import yaml

from suites import config
from suites.outputs import report, tracking
from suites.run import cli, starter
from tests.conftest import write_jsonl, write_yaml

EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.I)


def read(path) -> str:
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def assert_self_contained(page: str) -> None:
    assert not EXTERNAL.search(page), EXTERNAL.search(page).group(0)
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page


@pytest.fixture(scope="module")
def cls_run(tmp_path_factory):
    """A tiny classification run with two epochs, an eval and a checkpoint per epoch."""
    from tests.conftest import TINY_BERT, sentiment_rows

    tmp = tmp_path_factory.mktemp("report")
    train = write_jsonl(tmp / "train.jsonl", sentiment_rows(96, 0))
    eval_ = write_jsonl(tmp / "eval.jsonl", sentiment_rows(30, 1))
    cfg = {"task": "classification", "output_dir": str(tmp / "run"), "model": {"from_config": dict(TINY_BERT)},
           "tokenizer": {"train_from_data": True, "vocab_size": 120, "algorithm": "wordpiece"},
           "data": {"train": train, "eval": eval_, "max_length": 32},
           "train": {"num_train_epochs": 2, "per_device_train_batch_size": 16, "learning_rate": 3e-3,
                     "logging_steps": 2, "save_strategy": "epoch", "use_cpu": True}}
    path = write_yaml(tmp / "c.yaml", cfg)
    assert cli.run(["train", path, "--quiet"]) == 0
    return tmp, path, cfg["output_dir"]


def test_train_writes_a_self_contained_report(cls_run):
    tmp, _, out = cls_run
    page = read(os.path.join(out, "report.html"))
    assert_self_contained(page)
    figures = {"loss.png", "learning_rate.png", "throughput.png", "memory.png", "eval_metrics.png",
               "confusion_matrix.png"}
    assert figures <= set(os.listdir(os.path.join(out, "figures")))
    assert page.count('src="data:image/png;base64,') == len(figures)
    results = json.loads(read(os.path.join(out, "results.json")))
    for key in ("eval_accuracy", "eval_loss", "train_loss", "eval_f1_macro"):
        assert f"<td>{key}</td><td class=\"num\">{report._fmt(results[key])}</td>" in page, key
    env = json.loads(read(os.path.join(out, "environment.json")))
    for name in ("python", "torch", "transformers", "trl", "peft", "device"):
        assert name in env and f"<td>{env[name]}</td>" in page
    assert "task: classification" in page  # the config
    assert "Worst-classified eval examples" in page


def test_eval_predictions_keep_row_order(cls_run):
    """The eval sampler must not reorder rows (transformers applies group_by_length to eval too)."""
    tmp, _, out = cls_run
    rows = [json.loads(x) for x in read(os.path.join(out, "eval_predictions.jsonl")).splitlines()]
    truth = [json.loads(x) for x in read(tmp / "eval.jsonl").splitlines()]
    assert [(r["text"], r["label"]) for r in rows] == [(t["text"], t["label"]) for t in truth]
    for r in rows:
        assert 0.5 <= r["confidence"] <= 1 and (r["p_label"] == r["confidence"]) == (r["label"] == r["predicted"])


def test_report_of_an_interrupted_run_from_its_checkpoint(cls_run, tmp_path):
    _, _, out = cls_run
    copy = tmp_path / "interrupted"
    shutil.copytree(out, copy)
    for name in ("trainer_state.json", "results.json", "report.html"):
        os.remove(copy / name)
    shutil.rmtree(copy / "figures")
    assert cli.run(["report", str(copy)]) == 0
    page = read(copy / "report.html")
    assert_self_contained(page)
    assert "did not finish" in page and "checkpoint-" in page
    assert page.count("data:image/png;base64,") >= 5
    assert (copy / "figures" / "loss.png").is_file()


def test_compare_two_runs(cls_run, tmp_path):
    tmp, path, out = cls_run
    other = str(tmp_path / "lr-low")
    assert cli.run(["train", path, f"output_dir={other}", "train.learning_rate=1e-4", "train.num_train_epochs=1",
                    "train.save_strategy='no'", "--quiet"]) == 0
    # --quiet turns progress bars off, whatever the terminal
    assert yaml.safe_load(read(os.path.join(other, "run_config.yaml")))["train"]["disable_tqdm"] is True
    page_path = str(tmp_path / "ab.html")
    assert cli.run(["report", out, other, "--output", page_path]) == 0
    page = read(page_path)
    assert_self_contained(page)
    assert "<th>run</th><th>lr-low</th>" in page
    for d in (out, other):
        acc = json.loads(read(os.path.join(d, "results.json")))["eval_accuracy"]
        assert f'<td class="num">{report._fmt(acc)}</td>' in page
    assert page.count("data:image/png;base64,") >= 4
    assert os.path.isfile(str(tmp_path / "ab_figures" / "loss.png"))


MATH_LABELS = ("$\\frac{$", "a_b^c$", "<i>x</i>")  # matplotlib would read the first as math and fail


def test_figures_draw_user_text_literally(tmp_path):
    """Class names, run names and metric names with `$` are drawn as written, also where a user's
    matplotlibrc turns LaTeX on (issue 21, item 6)."""
    import matplotlib
    import numpy as np

    from suites.outputs import figures
    from tasks.metrics.plots import confusion_matrix_png

    path = str(tmp_path / "cm.png")
    history = [{"loss": 1.0, "learning_rate": 1e-3, "step": 1}, {"eval_loss": 0.9, "eval_f1_$x^$": 0.5, "step": 1}]
    runs = [report.Run(path=str(tmp_path), label=label, log_history=history) for label in MATH_LABELS]
    with matplotlib.rc_context({"text.usetex": True}):  # no LaTeX here: drawn with it, every figure fails
        confusion_matrix_png(np.array([[1, 2, 0], [0, 3, 1], [1, 0, 2]]), list(MATH_LABELS), path)
        drawn = figures.curves(runs, figures.colors(len(runs)))
        assert matplotlib.rcParams["text.usetex"] is True  # the user's setting is back after drawing
    fig, ax = figures.pyplot().subplots()
    figures._plot(ax, [1], [1.0], "_tmp")
    assert [t.get_text() for t in ax.legend().get_texts()] == [" _tmp"]  # a legend drops labels starting with _
    figures.pyplot().close(fig)
    assert read_bytes(path).startswith(b"\x89PNG")
    assert {"loss.png", "eval_metrics.png"} <= {name for name, _, _ in drawn}


def read_bytes(path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def test_a_run_with_math_like_labels_has_its_report(tmp_path):
    from tests.conftest import TINY_BERT, sentiment_rows

    names = {"pos": MATH_LABELS[0], "neg": MATH_LABELS[1]}
    rows = [dict(r, label=names[r["label"]]) for r in sentiment_rows(40, 0)]
    rows[:4] = [dict(r, label=MATH_LABELS[2]) for r in rows[:4]]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    cfg = {"task": "classification", "output_dir": str(tmp_path / "run"), "model": {"from_config": dict(TINY_BERT)},
           "tokenizer": {"train_from_data": True, "vocab_size": 120, "algorithm": "wordpiece"},
           "data": {"train": train, "eval": train, "max_length": 32},
           "train": {"max_steps": 2, "per_device_train_batch_size": 16, "logging_steps": 1,
                     "save_strategy": "no", "use_cpu": True}}
    out = tmp_path / "run"
    assert cli.run(["train", write_yaml(tmp_path / "c.yaml", cfg), "--quiet"]) == 0
    assert read_bytes(out / "figures" / "confusion_matrix.png").startswith(b"\x89PNG")
    os.remove(out / "report.html")
    assert cli.run(["report", str(out)]) == 0
    page = read(out / "report.html")
    assert "data:image/png;base64," in page and "$\\frac{$" in page and "a_b^c$" in page
    assert "&lt;i&gt;x&lt;/i&gt;" in page and "<i>x</i>" not in page  # HTML stays escaped


def test_report_of_a_missing_or_empty_dir_exits_2(tmp_path, capsys):
    assert cli.run(["report", str(tmp_path / "nope")]) == 2
    assert cli.run(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: report:") and "trainer_state.json" in err[-1]


def test_generation_tables_from_prediction_files(tmp_path):
    """Seq2seq and SFT: the latest predictions file becomes a table, text escaped."""
    history = [{"loss": 2.0, "learning_rate": 1e-3, "step": 5, "tokens_per_s": 10.0, "samples_per_s": 1.0},
               {"eval_loss": 1.5, "eval_bleu": 3.0, "step": 5}, {"eval_loss": 1.2, "eval_bleu": 7.5, "step": 10}]
    s2s = tmp_path / "s2s"
    (s2s / "predictions").mkdir(parents=True)
    (s2s / "trainer_state.json").write_text(json.dumps({"log_history": history, "global_step": 10}))
    (s2s / "results.json").write_text(json.dumps({"task": "seq2seq", "eval_bleu": 7.5}))
    write_jsonl(s2s / "predictions" / "eval_step5.jsonl", [{"source": "old", "reference": "x", "hypothesis": "y"}])
    write_jsonl(s2s / "predictions" / "eval_step10.jsonl",
                [{"source": "a dog", "reference": "GOD A", "hypothesis": "<b>GOD</b> A"}])
    page = read(report.write_report(str(s2s)))
    assert "&lt;b&gt;GOD&lt;/b&gt; A" in page and "<b>GOD" not in page and ">old<" not in page
    assert "<th>hypothesis</th>" in page and "eval_step10.jsonl" in page
    assert_self_contained(page)

    sft = tmp_path / "sft"
    sft.mkdir()
    (sft / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    write_jsonl(sft / "eval_generations.jsonl", [{"prompt": "repeat: sun", "prediction": "sun", "reference": "sun"}])
    page = read(report.write_report(str(sft)))
    assert "<th>prompt</th><th>reference</th><th>prediction</th>" in page and "repeat: sun" in page

    # train.eval_on_start kept the replies before training: shown beside those after, the prompt's end first
    long_prompt = "<|im_start|>system\n" + "default system prompt " * 30 + "<|im_start|>user\nrepeat: sun"
    write_jsonl(sft / "eval_generations.jsonl", [{"prompt": long_prompt, "prediction": "sun", "reference": "sun"}])
    write_jsonl(sft / "eval_generations_start.jsonl",
                [{"prompt": long_prompt, "prediction": "Sure! Here is", "reference": "sun"}])
    page = read(report.write_report(str(sft)))
    assert "<th>before_training</th><th>after_training</th>" in page
    assert "Sure! Here is" in page and "repeat: sun" in page


def _tiny_data(tmp_path, family):
    if family == "classification":
        rows = [{"text": "good", "label": "pos"}, {"text": "bad", "label": "neg"}]
    elif family == "seq2seq":
        rows = [{"source": "a dog", "target": "ein Hund"}]
    elif family == "preference":
        rows = [{"prompt": "hi", "chosen": "hello", "rejected": "go away"}]
    else:
        rows = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}]
    return write_jsonl(tmp_path / f"{family}.jsonl", rows)


@pytest.mark.parametrize("family", ["classification", "seq2seq", "sft", "preference"])
def test_init_config_loads_and_validates(tmp_path, family, capsys):
    out = tmp_path / f"{family}.yaml"
    assert cli.run(["init", family, "--output", str(out)]) == 0
    text = read(out)
    assert text.count("\n#") >= 3 and "docs/config.md" in text  # commented
    data = _tiny_data(tmp_path, family)
    cfg = config.load(str(out), [f"data.train={data}", f"data.eval={data}"])
    assert cfg.task == family and cfg.output_dir == f"runs/{family}"
    assert cli.run(["init", family, "--output", str(out)]) == 2  # never over an existing file
    assert cli.run(["init", family]) == 0 and "task: " + family in capsys.readouterr().out
    assert starter.render(family) == starter.render(family)


@pytest.mark.parametrize("integration", ["mlflow", "tensorboard"])
def test_missing_integration_is_a_one_line_error(tmp_path, cls_config, integration):
    import importlib.util

    if importlib.util.find_spec(integration):
        pytest.skip(f"{integration} is installed")
    cls_config["train"]["report_to"] = integration
    path = write_yaml(tmp_path / "c.yaml", cls_config)
    proc = subprocess.run([sys.executable, "-m", "suites.run.cli", "train", path], capture_output=True, text=True)
    assert proc.returncode == 2
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert lines == [f"error: config: train.report_to: {integration} is not installed; pip install {integration} "
                     "(or set train.report_to: none)"]


def test_mlflow_defaults_to_a_local_store_and_config_is_logged(tmp_path, cls_config, monkeypatch):
    from transformers.integrations import TensorBoardCallback

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = config.load(write_yaml(tmp_path / "c.yaml", cls_config))
    cfg.train["report_to"] = ["mlflow", "tensorboard"]
    written = []
    tb = object.__new__(TensorBoardCallback)  # the integration itself is not installed here
    tb.tb_writer = types.SimpleNamespace(add_text=lambda *a: written.append(a), add_scalar=lambda *a: written.append(a))
    callbacks = [tb]
    trainer = types.SimpleNamespace(callback_handler=types.SimpleNamespace(callbacks=callbacks),
                                    add_callback=callbacks.append)
    tracking.attach(cfg, trainer, {"params_total": 10, "params_trainable": 4})
    assert os.environ["MLFLOW_TRACKING_URI"] == "file://" + os.path.abspath(os.path.join(cfg.output_dir, "mlruns"))
    callbacks[-1].on_train_begin(None, types.SimpleNamespace(is_world_process_zero=True), None)
    assert written[0][0] == "run_config" and '"task": "classification"' in written[0][1]
    assert ("model/params_trainable", 4, 0) in written

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    tracking.attach(cfg, trainer, {})
    assert os.environ["MLFLOW_TRACKING_URI"] == "http://tracking.example:5000"  # the user's own wins
