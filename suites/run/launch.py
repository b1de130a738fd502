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

The launcher stays the parent of torchrun: a SIGTERM/SIGINT/SIGHUP sent to it (a scheduler's
preemption notice, Ctrl-C) is passed on once to torchrun, which passes it on to the processes
(torchrun runs in its own session, so a terminal's Ctrl-C does not reach it twice). Each process
runs `trainsuite` through `suites.run.launch --worker` and leaves its exit code in a folder the launcher
reads at the end, so the launcher exits with trainsuite's own codes (2 a mistake, 3 interrupted after
a checkpoint, 4 non-finite loss) instead of torchrun's 1.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import subprocess
import sys
import tempfile

from ..config.distributed import DEEPSPEED_INSTALL, DEEPSPEED_PRESETS, FSDP_PRESETS, preset_path
from ..config.redact import redact_argv
from .env import COMMAND_ENV, STATUS_ENV

COMMANDS = ("train", "eval", "predict")
WORKER = "--worker"  # what torchrun runs on each process: `python -m suites.run.launch --worker COMMAND ...`
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
EXIT_MEANING = {2: "a mistake in the config, data or command line: see the error: line above",
                3: "interrupted after saving a checkpoint: run the same command with --resume",
                4: "a non-finite loss or gradient: see the stopped: line above"}


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
        # as CUDA reads it: the devices listed before the first invalid entry (empty, or a negative
        # number such as -1), so "0,-1,2" is one GPU and "-1" or "" none
        count = 0
        for v in visible.split(","):
            v = v.strip()
            if not v or (v.lstrip("-").isdigit() and int(v) < 0):
                break
            count += 1
        return count
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
    if rest[0].startswith("-"):  # before the config only launcher options are expected
        raise LaunchError(f"unknown option {rest[0]} (launcher options: --nproc, --nnodes, --node-rank, "
                          "--master-addr, --master-port, --deepspeed, --fsdp, --fsdp-config, --dry-run; "
                          "trainsuite options such as --overwrite or --resume go after the config)")
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
    if args.nnodes < 1:
        raise LaunchError("--nnodes must be at least 1")
    if not 0 <= args.node_rank < args.nnodes:
        raise LaunchError(f"--node-rank must be 0..{args.nnodes - 1} with --nnodes {args.nnodes}")
    if args.nnodes > 1:
        if not args.master_addr:
            raise LaunchError("--nnodes > 1 needs --master-addr (the node-rank 0 machine)")
        cmd += [f"--nnodes={args.nnodes}", f"--node-rank={args.node_rank}", f"--master-addr={args.master_addr}",
                f"--master-port={args.master_port}"]
    else:
        cmd += ["--standalone"]  # a free port on this machine, no rendezvous server
    cmd += ["-m", "suites.run.launch", WORKER, command, rest[0], *overrides, *rest[1:]]
    return cmd, added


def resume_command(argv: list[str], prog: str = "scripts/launch") -> str:
    """The launch command that continues this run: the same arguments with --resume (an explicit
    checkpoint, --overwrite and --dry-run dropped: the newest complete checkpoint is the one to take)."""
    out, skip = [], False
    for i, a in enumerate(argv):
        if skip:
            skip = False
            continue
        if a in ("--overwrite", "--dry-run"):
            continue
        if a == "--resume":
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            skip = nxt is not None and not nxt.startswith("-") and "=" not in nxt
            continue
        if a.startswith("--resume="):
            continue
        out.append(a)
    return shlex.join([prog, *redact_argv(out), "--resume"])  # printed: no token in it


def worker(argv: list[str]) -> int:
    """One process of the launch: trainsuite, its exit code left for the launcher."""
    from .cli import run

    try:
        code = run(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code if isinstance(exc.code, int) else 1
    folder = os.environ.get(STATUS_ENV)
    if folder and os.path.isdir(folder):
        with open(os.path.join(folder, f"rank-{os.environ.get('RANK', '0')}"), "w") as fh:
            fh.write(str(code))
    close_process_group()
    return code


def close_process_group() -> None:
    """Destroy the process group while the interpreter is whole: left to interpreter shutdown, gloo's
    worker threads can outlive it and abort a finished process (SIGABRT, "terminate called without an
    active exception"), which turns a run that succeeded into a failed launch."""
    with contextlib.suppress(Exception):
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


def worker_codes(folder: str) -> dict[int, int]:
    codes = {}
    for name in os.listdir(folder):
        with contextlib.suppress(OSError, ValueError):
            with open(os.path.join(folder, name)) as fh:
                codes[int(name.removeprefix("rank-"))] = int(fh.read().strip())
    return codes


def outcome(torchrun_code: int, codes: dict[int, int]) -> int:
    """The launch's exit code: trainsuite's own when a process ended with one (a mistake first, then
    a non-finite stop, then an interruption), else torchrun's."""
    if torchrun_code == 0:
        return 0
    for wanted in (2, 4, 3):
        if wanted in codes.values():
            return wanted
    return torchrun_code


def _die_with_parent() -> None:
    """In torchrun's process (Linux): a SIGTERM when the launcher dies, even by SIGKILL, so that no run
    goes on without it."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG


def run_torchrun(cmd: list[str], env: dict) -> int:
    with tempfile.TemporaryDirectory(prefix="trainsuite-launch-") as folder:
        env = {**env, STATUS_ENV: folder}
        # its own session: a terminal's Ctrl-C reaches the launcher only, which passes it on once
        proc = subprocess.Popen(cmd, env=env, start_new_session=True,
                                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)

        def forward(signum, frame):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signum)

        previous = {}
        try:
            for s in FORWARDED:
                previous[s] = signal.signal(s, forward)
            code = proc.wait()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        final = outcome(code, worker_codes(folder))
    message = exit_message(final, env.get(COMMAND_ENV))
    if message:
        print(message, file=sys.stderr, flush=True)
    return final


def exit_message(code: int, resume: str | None = None) -> str | None:
    """The launch's last line for a failed run: trainsuite's meaning of its own codes; for any other
    failure (a process crashed, or lost its peers because a node died: gloo/NCCL "Connection reset by
    peer"), where to look and how to continue."""
    if code == 0:
        return None
    if code in EXIT_MEANING:
        return f"scripts/launch: exit code {code}: {EXIT_MEANING[code]}"
    return (f"scripts/launch: exit code {code}: a process of the run failed or lost contact with the others (a node "
            "that died or was stopped); the first error above names it; to continue from the newest complete "
            f"checkpoint once every node is back: {resume or 'the same launch command with --resume'}")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [WORKER]:
        return worker(argv[1:])
    try:
        cmd, added = build(argv)
    except LaunchError as exc:
        print(f"scripts/launch: error: {exc}", file=sys.stderr)
        return 2
    shown = " ".join(f"{k}={v}" for k, v in added.items())
    print(f"+ {shown} {shlex.join(redact_argv(cmd))}", file=sys.stderr, flush=True)
    if "--dry-run" in argv:
        return 0
    prog = "scripts/launch" if os.path.basename(sys.argv[0]) in ("launch.py", "-m") else os.path.basename(sys.argv[0])
    return run_torchrun(cmd, {**os.environ, **added, COMMAND_ENV: resume_command(argv, prog)})


def end_worker(code: int) -> None:
    """End a worker process once its code is recorded and its process group destroyed: the atexit handlers
    (logging's flush among them) run, the streams are flushed, and the process exits without the
    interpreter's teardown, where a library's native thread still alive (gloo, DeepSpeed) can abort a rank
    that finished (SIGABRT), and torchrun would report the whole launch as failed."""
    import atexit

    with contextlib.suppress(Exception):
        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_code = main()
    if sys.argv[1:2] == [WORKER]:
        end_worker(exit_code)
    sys.exit(exit_code)
