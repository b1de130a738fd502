"""The distributed engines run for real on CPU processes (gloo), through scripts/launch: two nodes on
loopback (a node that dies, then --resume on both), FSDP2, and DeepSpeed ZeRO-1/2/3 when installed.
Each compares its training losses with one process at the doubled per-device batch (the same
global batch; DDP == 1 process is tested in test_distributed.py), and the model a sharded run saves
loads back unsharded with the eval metrics of the live model at the end of training.

Tolerance: rel 1e-3 / abs 1e-4 on losses (the float summation order differs between one process
and gradients reduced over two), rel 1e-5 on eval metrics of the same weights."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from suites import config
from suites.run import runner
from tests.conftest import TINY_BERT, write_yaml
from tests.sft_common import chat_rows, sft_config
from tests.test_distributed import cls_dict, losses, results
from tests.test_sft_peft import base_dir  # noqa: F401  (a tiny saved Llama, the base of LoRA runs)

pytestmark = pytest.mark.slow
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH = os.path.join(ROOT, "scripts", "launch")
ENV = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
       "DS_ACCELERATOR": "cpu"}
LOSS = {"rel": 1e-3, "abs": 1e-4}
LORA = {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}


def start(*args, cwd, log):
    return subprocess.Popen([LAUNCH, *args], cwd=cwd, env=ENV, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            text=True)


def launch(*args, cwd):
    proc = subprocess.run([LAUNCH, *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants (Linux /proc): a whole node, to kill it as a machine dies."""
    children = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as fh:
                    parent = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(parent, []).append(int(name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def wait_for(path, procs, timeout=300):
    """Until `path` exists (checkpoints appear by an atomic rename), failing if a process ends first."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert all(p.poll() is None for p in procs), "a launcher ended before " + str(path)
        assert time.monotonic() < deadline, f"no {path} after {timeout} s"
        time.sleep(0.1)


def sft_lora_packing(tmp_path, base, **train):
    raw = sft_config(tmp_path, chat_rows(32, 0, max_words=8), chat_rows(11, 1), sft={"packing": True,
                     "max_length": 48}, peft=LORA,
                     train={"per_device_train_batch_size": 4, "per_device_eval_batch_size": 2, "logging_steps": 1,
                            "learning_rate": 0.02, **train})
    raw["model"], raw["tokenizer"] = {"name_or_path": base}, {}
    return raw


def single_process(raw, tmp_path, name="single.yaml"):
    """The reference: one process, twice the per-device batch."""
    one = dict(raw, output_dir=str(tmp_path / "one"))
    one["train"] = {**raw["train"], "per_device_train_batch_size": 2 * raw["train"]["per_device_train_batch_size"]}
    return runner.train(config.load(write_yaml(tmp_path / name, one))), str(tmp_path / "one")


def last_eval(run_dir) -> dict:
    with open(os.path.join(run_dir, "trainer_state.json")) as fh:
        return [h for h in json.load(fh)["log_history"] if "eval_loss" in h][-1]


# -- two nodes on loopback ------------------------------------------------------------------------------------


def test_two_nodes_on_loopback_equal_one_process_a_dead_node_stops_the_other_and_both_resume(tmp_path, base_dir):
    raw = sft_lora_packing(tmp_path, base_dir, max_steps=24, save_strategy="steps", save_steps=2,
                           eval_strategy="no")
    raw["output_dir"] = str(tmp_path / "two")  # one file system for both nodes, as the docs ask
    path = write_yaml(tmp_path / "sft.yaml", raw)
    one, one_dir = single_process(raw, tmp_path)

    port = free_port()
    node = ["--nnodes", "2", "--master-addr", "127.0.0.1", "--master-port", str(port), "--nproc", "1", path]
    logs = [tmp_path / "node0.log", tmp_path / "node1.log"]
    nodes = [start("--node-rank", str(r), *node, cwd=tmp_path, log=logs[r]) for r in (0, 1)]
    try:
        wait_for(tmp_path / "two" / "checkpoint-2", nodes)
        for pid in process_tree(nodes[1].pid):  # node 1 dies as a machine does: every process at once
            os.kill(pid, signal.SIGKILL)
        started = time.monotonic()
        code = nodes[0].wait(timeout=120)
        waited = time.monotonic() - started
    finally:
        for p in nodes:
            if p.poll() is None:
                p.kill()
    last = logs[0].read_text().strip().splitlines()[-1]
    assert code == 1 and waited < 120, (code, waited)  # before: torchrun's traceback was the last word
    assert last.startswith("scripts/launch: exit code 1: a process of the run failed or lost contact"), last
    assert "--node-rank 0" in last and last.endswith("--resume")
    assert not os.path.exists(tmp_path / "two" / "results.json")

    nodes = [start("--node-rank", str(r), *node, "--resume", cwd=tmp_path, log=logs[r]) for r in (0, 1)]
    codes = [p.wait(timeout=600) for p in nodes]
    assert codes == [0, 0], [log.read_text()[-3000:] for log in logs]
    assert "resuming from" in logs[1].read_text()
    two = results(tmp_path / "two")
    assert two["world_size"] == 2 and two["global_batch_size"] == one["global_batch_size"] == 8
    # rank 0 alone writes: node 1's process (rank 1) logged no report and printed no results
    assert "report:" in logs[0].read_text() and "report:" not in logs[1].read_text()
    assert '"world_size"' not in logs[1].read_text()
    a, b = losses(one_dir), losses(tmp_path / "two")
    assert [s for s, _ in b] == [s for s, _ in a] == list(range(1, 25))
    assert [x for _, x in b] == pytest.approx([x for _, x in a], **LOSS)


# -- FSDP2 on CPU processes -------------------------------------------------------------------------------------


def test_fsdp2_lora_sft_equals_one_process_resumes_and_its_adapter_evaluates_unsharded(tmp_path, base_dir):
    raw = sft_lora_packing(tmp_path, base_dir, max_steps=4, save_strategy="steps", save_steps=2,
                           eval_strategy="steps", eval_steps=2)
    raw["output_dir"] = str(tmp_path / "fsdp")
    path = write_yaml(tmp_path / "sft.yaml", raw)
    _, one_dir = single_process(raw, tmp_path)
    launch("--fsdp", "--nproc", "2", path, cwd=tmp_path)
    run = tmp_path / "fsdp"
    # sharded for real: FSDP's own checkpoint files (DDP, which accelerate used to fall back to, writes optimizer.pt)
    assert {"pytorch_model_fsdp.bin", "optimizer.bin"} <= set(os.listdir(run / "checkpoint-2"))
    assert results(run)["world_size"] == 2
    assert os.path.isfile(run / "adapter_model.safetensors")
    a, b = losses(one_dir), losses(run)
    assert [s for s, _ in b] == [s for s, _ in a] == [1, 2, 3, 4]
    assert [x for _, x in b] == pytest.approx([x for _, x in a], **LOSS)

    # resumed from the middle (the sharded model and optimizer state of step 2): the same last two steps
    again = tmp_path / "again"
    again.mkdir()
    shutil.copytree(run / "checkpoint-2", again / "checkpoint-2")
    launch("--fsdp", "--nproc", "2", path, f"output_dir={again}", "--resume", cwd=tmp_path)
    resumed = losses(again)[-2:]
    assert [s for s, _ in resumed] == [3, 4]
    assert [x for _, x in resumed] == pytest.approx([x for _, x in b[-2:]], **LOSS)

    # the adapter saved under sharding, on the unsharded base in one process: the live model's last eval
    live = last_eval(run)
    from peft import AutoPeftModelForCausalLM

    assert AutoPeftModelForCausalLM.from_pretrained(str(run)).peft_config["default"].r == LORA["r"]
    got = runner.evaluate(config.load(path, [f"model.name_or_path={run}"]))
    assert got["world_size"] == 1
    assert got["eval_loss"] == pytest.approx(live["eval_loss"], rel=1e-5)
    assert got["eval_num_tokens"] == live["eval_num_tokens"]


def test_fsdp2_classification_equals_one_process_and_its_full_save_loads_unsharded(tmp_path):
    raw = cls_dict(tmp_path)
    raw["train"].update(num_train_epochs=1, per_device_train_batch_size=4, save_strategy="steps", save_steps=6,
                        eval_strategy="steps", eval_steps=6)
    raw["output_dir"] = str(tmp_path / "fsdp")
    path = write_yaml(tmp_path / "cls.yaml", raw)
    _, one_dir = single_process(raw, tmp_path)
    launch("--fsdp", "--nproc", "2", path, cwd=tmp_path)
    run = tmp_path / "fsdp"
    assert "pytorch_model_fsdp.bin" in os.listdir(run / "checkpoint-6")
    a, b = losses(one_dir), losses(run)
    assert len(a) == 6 and [s for s, _ in b] == [s for s, _ in a]
    assert [x for _, x in b] == pytest.approx([x for _, x in a], **LOSS)

    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(str(run))  # one plain file, full tensors
    assert model.config.hidden_size == TINY_BERT["hidden_size"] and model.config.num_labels == 2
    live = last_eval(run)
    got = runner.evaluate(config.load(path))  # `trainsuite eval` of the run: its saved model, one process
    for k in ("eval_loss", "eval_accuracy", "eval_f1_macro"):
        assert got[k] == pytest.approx(live[k], rel=1e-5), k


# -- DeepSpeed (optional extra) ----------------------------------------------------------------------------------


ZERO1 = {"zero_optimization": {"stage": 1}, "gradient_accumulation_steps": "auto", "gradient_clipping": "auto",
         "train_batch_size": "auto", "train_micro_batch_size_per_gpu": "auto", "steps_per_print": 1000000}


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None,
                    reason="deepspeed not installed (pip install 'trainsuite[deepspeed]')")
@pytest.mark.parametrize("stage", ["zero1", "zero2", "zero3", "zero3-lora"])
def test_deepspeed_on_cpu_equals_one_process_and_its_save_loads_unsharded(tmp_path, base_dir, stage):
    # a pretrained base: ZeRO-3 initialises a from_config model inside zero.Init, not as one process does
    raw = sft_lora_packing(tmp_path, base_dir, max_steps=4)
    lora = stage.endswith("-lora")  # the adapter is saved from the ZeRO-3 shards
    stage = stage.removesuffix("-lora")
    if not lora:
        del raw["peft"]  # a full fine-tune
    raw["output_dir"] = str(tmp_path / "ds")
    path = write_yaml(tmp_path / "sft.yaml", raw)
    _, one_dir = single_process(raw, tmp_path)
    preset = stage
    if stage == "zero1":
        preset = str(tmp_path / "zero1.json")
        with open(preset, "w") as fh:
            json.dump(ZERO1, fh)
    launch("--deepspeed", preset, "--nproc", "2", path, cwd=tmp_path)
    run = tmp_path / "ds"
    assert results(run)["world_size"] == 2
    assert os.path.isfile(run / ("adapter_model.safetensors" if lora else "model.safetensors"))
    a, b = losses(one_dir), losses(run)
    assert [s for s, _ in b] == [s for s, _ in a] == [1, 2, 3, 4]
    assert [x for _, x in b] == pytest.approx([x for _, x in a], **LOSS)
    # the final save (ZeRO-3: gathered from the shards) is a plain model or adapter: eval in one process
    # gives the live model's last eval
    live = results(run)["eval_loss"]
    got = runner.evaluate(config.load(path, [f"model.name_or_path={run}"]))
    assert got["world_size"] == 1 and got["eval_loss"] == pytest.approx(live, rel=1e-5)
