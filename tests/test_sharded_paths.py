"""Fast checks of the sharded code paths that the slow real runs (test_distributed_engines.py) found
broken: accelerate's FSDP on CPU processes, the non-finite guard under FSDP2, and the launcher's last
line when a process or node of the run dies."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

import torch

from suites.run import launch


def _guard_worker(rank, init_file, out_dir):
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor, Replicate

    from suites.callbacks.nonfinite import NonFiniteGuard

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        mesh = init_device_mesh("cpu", (2,))
        args = SimpleNamespace(world_size=2, fp16=False, device=torch.device("cpu"))
        seen = []
        for value in (1.5, float("inf") if rank == 1 else 2.0):  # a non-finite norm on one rank only
            guard = NonFiniteGuard()
            # FSDP2 hands the trainer's gradient norm over as a DTensor
            guard.observe_grad_norm(DTensor.from_local(torch.tensor(value), mesh, [Replicate()], run_check=False))
            guard.observe_loss(torch.tensor(0.5))
            seen.append(guard._nonfinite(args, None))
        with open(os.path.join(out_dir, f"guard{rank}.json"), "w") as fh:
            json.dump(seen, fh)
    finally:
        dist.destroy_process_group()


def test_nonfinite_guard_takes_a_dtensor_grad_norm(tmp_path):
    """Under FSDP2 every optimizer step crashed in the guard: all_reduce of a DTensor flag
    ('c10d.allreduce_.default does not have a sharding strategy registered')."""
    import torch.multiprocessing as mp

    mp.spawn(_guard_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        with open(tmp_path / f"guard{rank}.json") as fh:
            assert json.load(fh) == [False, True]  # every rank stops when one rank's norm is not finite


def _accelerator_worker(rank, port, out_dir):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import FullyShardedDataParallelPlugin

    from suites.fsdp_cpu import fsdp_on_cpu_processes

    args = SimpleNamespace(fsdp=True, use_cpu=True, world_size=2)
    original = AcceleratorState.__init__
    with fsdp_on_cpu_processes(args):
        acc = Accelerator(cpu=True, fsdp_plugin=FullyShardedDataParallelPlugin(fsdp_version=2))
    AcceleratorState()  # a later plain call (accelerate makes many) keeps FSDP
    out = {"type": str(acc.distributed_type), "fsdp2": acc.is_fsdp2,
           "partial": str(PartialState().distributed_type), "restored": AcceleratorState.__init__ is original}
    with open(os.path.join(out_dir, f"acc{rank}.json"), "w") as fh:
        json.dump(out, fh)
    acc.end_training()  # destroys the process group


def test_fsdp_on_cpu_processes_is_fsdp_not_ddp(tmp_path):
    """accelerate kept the FSDP plugin aside on CPU processes and ran DDP, while the run's log said FSDP."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_accelerator_worker, args=(port, str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        with open(tmp_path / f"acc{rank}.json") as fh:
            assert json.load(fh) == {"type": "DistributedType.FSDP", "fsdp2": True, "partial": "DistributedType.FSDP",
                                     "restored": True}


def test_only_cpu_fsdp_runs_are_changed():
    from suites.fsdp_cpu import wants_cpu_fsdp

    assert wants_cpu_fsdp(SimpleNamespace(fsdp=True, use_cpu=True, world_size=2))
    assert not wants_cpu_fsdp(SimpleNamespace(fsdp=True, use_cpu=False, world_size=2))  # GPUs: accelerate's own way
    assert not wants_cpu_fsdp(SimpleNamespace(fsdp=True, use_cpu=True, world_size=1))
    assert not wants_cpu_fsdp(SimpleNamespace(fsdp=False, use_cpu=True, world_size=2))


def test_launch_exit_message_for_a_crashed_or_abandoned_process():
    """A node that died left the other node's launch ending on torchrun's traceback, with no word on
    what happened or how to continue."""
    resume = "scripts/launch --nnodes 2 --node-rank 0 --master-addr h c.yaml --resume"
    msg = launch.exit_message(1, resume)
    assert msg.startswith("scripts/launch: exit code 1: a process of the run failed or lost contact")
    assert msg.endswith(resume) and "\n" not in msg
    assert launch.exit_message(0, resume) is None
    assert launch.exit_message(3, resume) == f"scripts/launch: exit code 3: {launch.EXIT_MEANING[3]}"


def test_fsdp2_wraps_the_layers_but_not_a_block_that_holds_the_input_embedding():
    """BERT lists BertEmbeddings in _no_split_modules: accelerate sharded it, then sharded the word
    embedding inside it again, and FSDP2's prepare failed for every BERT-like model."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    from suites.fsdp_wrap import fix_fsdp_wrapping, layer_classes_to_wrap
    from tests.conftest import TINY_BERT
    from tests.sft_common import TINY_LLAMA

    def build(auto, fields):
        return auto.from_config(AutoConfig.for_model(fields["model_type"], vocab_size=50,
                                                     **{k: v for k, v in fields.items() if k != "model_type"}))

    bert = build(AutoModelForSequenceClassification, TINY_BERT)
    assert "BertEmbeddings" in bert._no_split_modules
    assert layer_classes_to_wrap(bert) == ["BertLayer"]
    assert layer_classes_to_wrap(build(AutoModelForCausalLM, TINY_LLAMA)) is None  # nothing to leave out
    args = SimpleNamespace(fsdp_plugin_args={"auto_wrap_policy": "TRANSFORMER_BASED_WRAP"})
    fix_fsdp_wrapping(args, bert)
    assert args.fsdp_plugin_args["transformer_cls_names_to_wrap"] == "BertLayer"
    mine = SimpleNamespace(fsdp_plugin_args={"auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
                                             "transformer_cls_names_to_wrap": "BertEmbeddings,BertLayer"})
    fix_fsdp_wrapping(mine, bert)  # the user's own choice stays
    assert mine.fsdp_plugin_args["transformer_cls_names_to_wrap"] == "BertEmbeddings,BertLayer"
