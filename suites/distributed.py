"""What a run needs to know about its processes at run time: the global batch and schedule it logs
at the start, and whether the model is sharded (then every rank must join every forward pass,
generation included: `synced_gpus`)."""

from __future__ import annotations

import math


def model_is_sharded(args) -> bool:
    """ZeRO-3 or FSDP over more than one process: parameters live in pieces on every rank."""
    if args.world_size <= 1:
        return False
    if args.fsdp:
        return True
    from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

    return bool(args.deepspeed) and is_deepspeed_zero3_enabled()


def global_batch_size(args) -> int:
    return args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size


def schedule(args, num_train_rows: int) -> dict:
    """Global batch and optimizer steps as the Trainer will run them (batches are dealt out to the
    processes in turn; the last accumulation window of an epoch may be short)."""
    batches = math.ceil(num_train_rows / args.per_device_train_batch_size)
    per_rank = math.ceil(batches / args.world_size)
    steps_per_epoch = max(1, math.ceil(per_rank / args.gradient_accumulation_steps))
    total = args.max_steps if args.max_steps and args.max_steps > 0 else math.ceil(
        steps_per_epoch * args.num_train_epochs)
    warmup = args.get_warmup_steps(total) if hasattr(args, "get_warmup_steps") else args.warmup_steps
    return {"global_batch_size": global_batch_size(args), "steps_per_epoch": steps_per_epoch,
            "total_steps": total, "warmup_steps": warmup}


def schedule_line(args, num_train_rows: int) -> str:
    s = schedule(args, num_train_rows)
    engine = "DeepSpeed" if args.deepspeed else "FSDP" if args.fsdp else "DDP" if args.world_size > 1 else "1 process"
    return (f"global batch {s['global_batch_size']} = {args.per_device_train_batch_size} per device x "
            f"{args.gradient_accumulation_steps} accumulation x {args.world_size} processes ({engine}); "
            f"{num_train_rows} training rows, {s['steps_per_epoch']} optimizer steps per epoch, "
            f"{s['total_steps']} in all; learning rate {args.learning_rate:g}, {getattr(args.lr_scheduler_type, 'value', args.lr_scheduler_type)} "
            f"schedule after {s['warmup_steps']} warmup steps")


def start_deepspeed_comm(args) -> None:
    """DeepSpeed on CPU processes: accelerate starts DeepSpeed's communication layer for GPUs only, and
    ZeRO-3 builds the model inside `deepspeed.zero.Init` before the engine would start it, so it read a
    world size of 1 and failed ("train_batch_size is not equal to ... 8 != 4 * 1 * 1")."""
    if not (args.deepspeed and args.use_cpu and args.world_size > 1):
        return
    from deepspeed import comm

    if not comm.is_initialized():
        comm.init_distributed(dist_backend="gloo", auto_mpi_discovery=False)  # on the process group torch has
