"""Distributed runs on CPU (2 processes, gloo, through scripts/launch) against 1 process, and the
config-time compatibility rules of suites/config/distributed.py."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import pytest

from suites import config
from suites.run import runner
from suites.config.distributed import validate_distributed
from suites.errors import MISTAKES
from suites.run.launch import build as launch_command
from tests.conftest import TINY_BERT, sentiment_rows, write_jsonl, write_yaml
from tests.sft_common import chat_rows, sft_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH = os.path.join(ROOT, "scripts", "launch")
NO_DROPOUT = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}


def launch(*args, cwd):
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([LAUNCH, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def losses(run_dir):
    with open(os.path.join(run_dir, "trainer_state.json")) as fh:
        history = json.load(fh)["log_history"]
    return [(h["step"], h["loss"]) for h in history if "loss" in h]


def results(run_dir, name="results.json"):
    with open(os.path.join(run_dir, name)) as fh:
        return json.load(fh)


def cls_dict(tmp_path, n_eval=27):
    train = write_jsonl(tmp_path / "train.jsonl", sentiment_rows(96, 0))
    eval_ = write_jsonl(tmp_path / "eval.jsonl", sentiment_rows(n_eval, 1))
    return {
        "task": "classification", "output_dir": str(tmp_path / "run1"),
        "model": {"from_config": {**TINY_BERT, **NO_DROPOUT}},
        "tokenizer": {"train_from_data": True, "vocab_size": 120, "algorithm": "wordpiece"},
        "data": {"train": train, "eval": eval_, "max_length": 32},
        "train": {"num_train_epochs": 2, "per_device_train_batch_size": 8, "per_device_eval_batch_size": 4,
                  "learning_rate": 3e-3, "logging_steps": 2, "save_strategy": "no", "use_cpu": True},
    }


def test_classification_two_processes_equal_one_and_evaluate_each_row_once(tmp_path):
    raw = cls_dict(tmp_path)
    path = write_yaml(tmp_path / "cls.yaml", raw)
    one = runner.train(config.load(path))
    assert one["world_size"] == 1 and one["global_batch_size"] == 8

    launch("--nproc", "2", path, f"output_dir={tmp_path / 'run2'}", "train.per_device_train_batch_size=4",
           cwd=tmp_path)
    two = results(tmp_path / "run2")
    assert two["world_size"] == 2 and two["global_batch_size"] == 8
    a, b = losses(tmp_path / "run1"), losses(tmp_path / "run2")
    assert [s for s, _ in a] == [s for s, _ in b] and len(a) == 12
    assert [x for _, x in b] == pytest.approx([x for _, x in a], rel=1e-3, abs=1e-4)  # float summation order

    # evaluation of one trained model: 27 rows do not split evenly over 2 processes x batch 4
    single = runner.evaluate(config.load(path))
    launch("--nproc", "2", "eval", path, cwd=tmp_path)
    double = results(tmp_path / "run1", "eval_results.json")  # beside the training results
    assert double["world_size"] == 2 and single["world_size"] == 1
    keys = [k for k in single if k.startswith("eval_") and not k.endswith(("runtime", "_per_second", "_time"))]
    assert "eval_loss" in keys and "eval_accuracy" in keys
    for k in keys:
        assert double[k] == pytest.approx(single[k], rel=1e-6, abs=1e-7), k
    # every row counted once: accuracy is a multiple of 1/27
    assert round(single["eval_accuracy"] * 27, 6) == int(round(single["eval_accuracy"] * 27))


def test_sft_packing_two_processes_equal_one(tmp_path):
    raw = sft_config(tmp_path, chat_rows(48, 0, max_words=8), chat_rows(11, 1), sft={"packing": True,
                     "max_length": 48}, train={"per_device_train_batch_size": 4, "logging_steps": 1,
                                               "per_device_eval_batch_size": 2})
    raw["output_dir"] = str(tmp_path / "run1")
    path = write_yaml(tmp_path / "sft.yaml", raw)
    one = runner.train(config.load(path, ["train.per_device_train_batch_size=8"]))
    launch("--nproc", "2", path, f"output_dir={tmp_path / 'run2'}", cwd=tmp_path)
    two = results(tmp_path / "run2")
    assert one["global_batch_size"] == two["global_batch_size"] == 8 and two["world_size"] == 2
    a, b = losses(tmp_path / "run1"), losses(tmp_path / "run2")
    assert len(a) >= 2 and [s for s, _ in a] == [s for s, _ in b]
    assert [x for _, x in b] == pytest.approx([x for _, x in a], rel=1e-3, abs=1e-4)  # float summation order
    # eval over 11 documents (an odd number of packed rows is likely): the same token count
    assert two["eval_num_tokens"] == one["eval_num_tokens"]
    assert two["eval_loss"] == pytest.approx(one["eval_loss"], rel=1e-3)


# -- the launcher ----------------------------------------------------------------------------------


def test_launch_command_cpu_and_multi_node():
    cmd, env = launch_command(["--nproc", "2", "c.yaml", "train.seed=1", "--overwrite"],
                              env={"CUDA_VISIBLE_DEVICES": ""})
    assert cmd[1:4] == ["-m", "torch.distributed.run", "--nproc-per-node=2"] and "--standalone" in cmd
    assert cmd[cmd.index("suites.run.launch"):] == ["suites.run.launch", "--worker", "train", "c.yaml", "train.use_cpu=true",
                                                "train.seed=1", "--overwrite"]
    assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    cmd, _ = launch_command(["--nnodes", "2", "--node-rank", "1", "--master-addr", "10.0.0.1", "--fsdp",
                             "eval", "c.yaml"], env={"CUDA_VISIBLE_DEVICES": "0,1,2,3"})
    assert "--nproc-per-node=4" in cmd and "--nnodes=2" in cmd and "--node-rank=1" in cmd
    assert "--master-addr=10.0.0.1" in cmd and "--master-port=29500" in cmd
    tail = cmd[cmd.index("--worker") + 1:]
    assert tail[:3] == ["eval", "c.yaml", "train.fsdp=true"] and tail[3].endswith("presets/fsdp2.json")


# sys.modules[name] = None: importlib.util.find_spec answers None and `import deepspeed` fails
HIDE_DEEPSPEED = "import sys\nsys.modules['deepspeed'] = None\n"


def test_launch_refuses_deepspeed_without_the_package(tmp_path):
    # deepspeed is an optional extra: hidden from the launcher's Python when it is installed here
    (tmp_path / "hide").mkdir()
    (tmp_path / "hide" / "sitecustomize.py").write_text(HIDE_DEEPSPEED)
    path = os.pathsep.join(p for p in (str(tmp_path / "hide"), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": path}
    proc = subprocess.run([LAUNCH, "--deepspeed", "zero3", "c.yaml"], env=env, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "scripts/launch: error: --deepspeed needs the deepspeed package: pip install 'trainsuite[deepspeed]' "
        "(or pip install deepspeed)"]


@pytest.mark.parametrize("preset", ["ds_zero2.json", "ds_zero3.json", "ds_zero3_offload.json", "fsdp2.json"])
def test_presets_are_json_with_auto_fields(preset):
    with open(os.path.join(ROOT, "scripts", preset)) as fh:
        data = json.load(fh)
    if preset.startswith("ds_"):
        assert data["train_micro_batch_size_per_gpu"] == "auto" and data["gradient_accumulation_steps"] == "auto"
    else:
        assert data["version"] == 2


# -- compatibility rules, one line each ------------------------------------------------------------


def _cfg(tmp_path, **sections):
    """A parsed config whose distributed checks are run with deepspeed present (faked by a stub)."""
    raw = copy.deepcopy(sft_config(tmp_path))
    for k, v in sections.items():
        raw[k] = {**raw.get(k, {}), **v} if isinstance(v, dict) and isinstance(raw.get(k), dict) else v
    return raw


@pytest.fixture
def fake_deepspeed(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "deepspeed" else real(name, *a))


def _check(tmp_path, **sections):
    raw = _cfg(tmp_path, **sections)
    cfg = config.RunConfig(task=raw["task"], train=raw["train"], sft=config.SFTConfig(**raw.get("sft", {})),
                           peft=config.PeftConfig(**raw["peft"]) if "peft" in raw else None,
                           quantization=config.QuantizationConfig(**raw["quantization"])
                           if "quantization" in raw else None)
    validate_distributed(cfg)
    return cfg


def _one_line(exc_info, *words):
    msg = str(exc_info.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


def test_deepspeed_missing_is_one_line_at_config_time(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec  # deepspeed hidden when it is installed here
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "deepspeed" else real(name, *a))
    with pytest.raises(MISTAKES) as e:
        config.from_dict({**sft_config(tmp_path), "train": {"deepspeed": "zero2", "use_cpu": True}})
    _one_line(e, "pip install", "deepspeed")


def test_qlora_with_zero3_needs_4_bit_and_not_fp16(tmp_path, fake_deepspeed):
    with pytest.raises(MISTAKES) as e:
        _check(tmp_path, train={"deepspeed": "zero3"}, peft={}, quantization={"bits": 8})
    _one_line(e, "QLoRA", "ZeRO-3", "quantization.bits=4")
    with pytest.raises(MISTAKES) as e:
        _check(tmp_path, train={"fsdp": True, "fp16": True}, peft={}, quantization={"bits": 4})
    _one_line(e, "QLoRA", "FSDP", "bf16")
    cfg = _check(tmp_path, train={"deepspeed": "zero3", "bf16": True}, peft={}, quantization={"bits": 4})
    assert cfg.train["deepspeed"].endswith("presets/ds_zero3.json")
    from suites.modeling import quantization_config

    assert "bnb_4bit_quant_storage" in str(quantization_config(cfg).to_dict())
    _check(tmp_path, train={"deepspeed": "zero2"}, peft={}, quantization={"bits": 8})  # ZeRO-2: each GPU a copy


def test_lora_with_fsdp1_needs_use_orig_params(tmp_path):
    with pytest.raises(MISTAKES) as e:
        _check(tmp_path, train={"fsdp": True, "fsdp_config": {"version": 1, "use_orig_params": False}}, peft={})
    _one_line(e, "LoRA", "use_orig_params=true")
    cfg = _check(tmp_path, train={"fsdp": True}, peft={})  # FSDP2 preset by default
    assert cfg.train["fsdp_config"].endswith("presets/fsdp2.json")


def test_packing_with_context_parallelism_is_refused(tmp_path):
    with pytest.raises(MISTAKES) as e:
        _check(tmp_path, sft={"packing": True}, train={"parallelism_config": {"cp_size": 2}})
    _one_line(e, "sft.packing", "context parallelism")
    _check(tmp_path, sft={"packing": False}, train={"parallelism_config": {"cp_size": 2}})


def test_gradient_checkpointing_zero3_peft_is_non_reentrant(tmp_path, fake_deepspeed):
    with pytest.raises(MISTAKES) as e:
        _check(tmp_path, peft={}, train={"deepspeed": "zero3", "gradient_checkpointing": True,
                                         "gradient_checkpointing_kwargs": {"use_reentrant": True}})
    _one_line(e, "ZeRO-3", "use_reentrant=false")
    cfg = _check(tmp_path, peft={}, train={"deepspeed": "zero3", "gradient_checkpointing": True})
    assert cfg.train["gradient_checkpointing_kwargs"] == {"use_reentrant": False}


def test_auto_find_batch_size_with_sharding_is_refused(tmp_path, fake_deepspeed):
    for train, engine in (({"deepspeed": "zero2"}, "DeepSpeed"), ({"fsdp": True}, "FSDP")):
        with pytest.raises(MISTAKES) as e:
            _check(tmp_path, train={**train, "auto_find_batch_size": True})
        _one_line(e, "auto_find_batch_size", engine)


def test_deepspeed_and_fsdp_exclude_each_other(tmp_path, fake_deepspeed):
    with pytest.raises(MISTAKES) as e:
        _check(tmp_path, train={"deepspeed": "zero2", "fsdp": True})
    _one_line(e, "exclude")


def test_a_plain_wheel_install_finds_the_presets(tmp_path):
    """A non-editable install has no scripts/ directory: the presets must travel inside the package."""
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), ROOT], check=True,
                   capture_output=True)
    (wheel,) = wheels.glob("trainsuite-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True,
                   capture_output=True)
    probe = ("import os, suites.config.distributed as d; "
             "paths = [d.preset_path(n, d.DEEPSPEED_PRESETS) for n in d.DEEPSPEED_PRESETS]; "
             "paths.append(d.preset_path('fsdp2', d.FSDP_PRESETS)); "
             "assert all(p.startswith(os.environ['PYTHONPATH']) and os.path.isfile(p) for p in paths), paths; "
             "import suites.run.launch")
    subprocess.run([sys.executable, "-c", probe], check=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(target)})
    entry_points = next(target.glob("trainsuite-*.dist-info")).joinpath("entry_points.txt").read_text()
    assert "trainsuite-launch = suites.run.launch:main" in entry_points


def _share_worker(rank, init_file, out_dir):
    import torch.distributed as dist

    from suites.errors import MISTAKES, UserError
    from suites.modeling import _once_for_all_ranks

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        # a maker that differs per process, as tokenizer trainers do between runs
        got = _once_for_all_ranks(lambda: f"made by rank {rank}")

        def fail():
            raise UserError("data.train: no text to train a tokenizer on")

        try:
            _once_for_all_ranks(fail)
            err = None
        except MISTAKES as exc:
            err = str(exc)
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as fh:
            json.dump({"got": got, "err": err}, fh)
    finally:
        dist.destroy_process_group()


def test_tokenizer_trained_once_and_shared_by_all_ranks(tmp_path):
    """Each rank training its own tokenizer gave ranks different vocabularies (WordPiece/Unigram
    trainers vary between trainings); rank 0 makes it and sends it, errors included (no hang)."""
    import torch.multiprocessing as mp

    mp.spawn(_share_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        with open(tmp_path / f"rank{rank}.json") as fh:
            out = json.load(fh)
        assert out == {"got": "made by rank 0", "err": "data.train: no text to train a tokenizer on"}


def _generate_worker(rank, init_file, out_dir, prompts, synced):
    import torch.distributed as dist

    from suites.generation import generate_in_order

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    batches = []

    def run_batch(idx, keep):
        batches.append([prompts[i] for i in idx])
        return [(prompts[i].upper(), len(prompts[i])) for i in idx], (keep,)

    try:
        out, stats = generate_in_order([len(p) for p in prompts], run_batch, 2, synced=synced)
        with open(os.path.join(out_dir, f"gen{rank}.json"), "w") as fh:
            json.dump({"out": out, "batches": batches, "stats": stats}, fh)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("synced", [False, True])
def test_generation_splits_rows_over_processes(tmp_path, synced):
    """Each process generates every other row of the longest-first order, and every process gets all
    outputs in row order. With a sharded model (synced) both run the same number of batches, the
    shorter share topped up with filler rows whose outputs and stats are dropped."""
    import torch.multiprocessing as mp

    prompts = ["a", "bbbbb", "cc", "dddd", "eee"]
    mp.spawn(_generate_worker, args=(str(tmp_path / "init"), str(tmp_path), prompts, synced), nprocs=2, join=True)
    got = [json.load(open(tmp_path / f"gen{rank}.json")) for rank in (0, 1)]
    for g in got:
        assert g["out"] == [[p.upper(), len(p)] for p in prompts]
        assert g["stats"] == [5]  # real rows only, summed over both processes
    # longest first: bbbbb dddd eee cc a -> rank 0: bbbbb eee a, rank 1: dddd cc
    if synced:  # 2 full batches each; filler rows repeat the longest row
        assert got[0]["batches"] == [["bbbbb", "eee"], ["a", "bbbbb"]]
        assert got[1]["batches"] == [["dddd", "cc"], ["bbbbb", "bbbbb"]]
    else:
        assert got[0]["batches"] == [["bbbbb", "eee"], ["a"]]
        assert got[1]["batches"] == [["dddd", "cc"]]
