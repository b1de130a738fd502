"""`scripts/launch`: one trainsuite command on several processes, GPUs or machines, through torchrun.

    scripts/launch [--nproc N] [--nnodes N --node-rank R --master-addr HOST --master-port P]
                   [--deepspeed zero2|zero3|zero3-offload|PATH] [--fsdp [--fsdp-config PATH]]
                   [train|eval|predict] CONFIG.yaml [dotted.key=value ...] [trainsuite options ...]

N defaults to the number of visible GPUs (CUDA_VISIBLE_DEVICES is respected; CUDA_DEVICE_ORDER=PCI_BUS_ID
so that GPU numbers match nvidia-smi). On a machine without a GPU, N defaults to 1 process; `--nproc 2`
runs 2 CPU processes on the gloo backend (how CI tests the distributed path). The command (train when
not named) and every argument after the config go to `trainsuite` unchanged; --deepspeed and --fsdp
become the overrides train.deepspeed=... and train.fsdp=true train.fsdp_config=... . The exact
underlying command is printed before it runs.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys

from .distributed_checks import DEEPSPEED_INSTALL, DEEPSPEED_PRESETS, FSDP_PRESETS, preset_path

COMMANDS = ("train", "eval", "predict")


class LaunchError(Exception):
    """A mistake on the launcher's command line: one line, exit code 2."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scripts/launch", allow_abbrev=False, description="Run a trainsuite command on N processes "
                                "per node (torchrun), optionally over several nodes, with DeepSpeed or FSDP.",
                                epilog="example: scripts/launch --nproc 4 --deepspeed zero2 configs/demo.yaml "
                                       "train.learning_rate=3e-5")
    p.add_argument("--nproc", type=int, default=None,
                   help="processes on this node (default: visible GPUs; 1 without a GPU)")
    p.add_argument("--nnodes", type=int, default=1, help="machines in the run (default 1)")
    p.add_argument("--node-rank", type=int, default=0, help="this machine's rank, 0..nnodes-1")
    p.add_argument("--master-addr", default=None, help="address of the node-rank 0 machine (multi-node)")
    p.add_argument("--master-port", type=int, default=29500, help="a free port on the master (default 29500)")
    p.add_argument("--deepspeed", default=None, metavar="PRESET_OR_PATH",
                   help=f"DeepSpeed: {' | '.join(DEEPSPEED_PRESETS)} (scripts/ds_*.json) or a JSON config")
    p.add_argument("--fsdp", action="store_true", help="FSDP2 with the preset scripts/fsdp2.json")
    p.add_argument("--fsdp-config", default=None, metavar="PATH", help="another fsdp_config JSON (implies --fsdp)")
    p.add_argument("--dry-run", action="store_true", help="print the command, do not run it")
    return p


def visible_gpus(env=os.environ) -> int:
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [v for v in visible.split(",") if v.strip()]
        return 0 if not ids or ids[0].strip() == "-1" else len(ids)
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # no torch, no driver
        return 0


def build(argv: list[str], env=None) -> tuple[list[str], dict]:
    """(the torchrun command, environment additions) for the launcher arguments `argv`."""
    env = dict(os.environ if env is None else env)
    args, rest = parser().parse_known_args(argv)
    if not rest:
        raise LaunchError("give a config file (CONFIG.yaml)")
    command = rest.pop(0) if rest[0] in COMMANDS else "train"
    if not rest:
        raise LaunchError("give a config file (CONFIG.yaml)")
    added = {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    env.update(added)
    gpus = visible_gpus(env)
    nproc = args.nproc if args.nproc is not None else max(gpus, 1)
    if nproc < 1:
        raise LaunchError("--nproc must be at least 1")
    if gpus == 0 and "OMP_NUM_THREADS" not in env:  # CPU processes share the cores
        added["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))

    overrides = []
    if args.deepspeed and (args.fsdp or args.fsdp_config):
        raise LaunchError("--deepspeed and --fsdp exclude each other")
    if args.deepspeed:
        import importlib.util

        if importlib.util.find_spec("deepspeed") is None:
            raise LaunchError(f"--deepspeed needs the deepspeed package: {DEEPSPEED_INSTALL}")
        path = preset_path(args.deepspeed, DEEPSPEED_PRESETS) or os.path.abspath(args.deepspeed)
        overrides.append(f"train.deepspeed={path}")
    if args.fsdp or args.fsdp_config:
        path = os.path.abspath(args.fsdp_config) if args.fsdp_config else preset_path("fsdp2", FSDP_PRESETS)
        overrides += ["train.fsdp=true", f"train.fsdp_config={path}"]
    if gpus == 0:
        overrides.append("train.use_cpu=true")  # gloo, CPU tensors

    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}"]
    if args.nnodes > 1:
        if not args.master_addr:
            raise LaunchError("--nnodes > 1 needs --master-addr (the node-rank 0 machine)")
        cmd += [f"--nnodes={args.nnodes}", f"--node-rank={args.node_rank}", f"--master-addr={args.master_addr}",
                f"--master-port={args.master_port}"]
    else:
        cmd += ["--standalone"]  # a free port on this machine, no rendezvous server
    cmd += ["-m", "suites.cli", command, rest[0], *overrides, *rest[1:]]
    return cmd, added


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        cmd, added = build(argv)
    except LaunchError as exc:
        print(f"scripts/launch: error: {exc}", file=sys.stderr)
        return 2
    shown = " ".join(f"{k}={v}" for k, v in added.items())
    print(f"+ {shown} {shlex.join(cmd)}", file=sys.stderr, flush=True)
    if "--dry-run" in argv:
        return 0
    return subprocess.call(cmd, env={**os.environ, **added})


if __name__ == "__main__":
    sys.exit(main())
