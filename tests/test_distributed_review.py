"""scripts/launch as the parent of a multi-process run: signals reach the processes once, the
launch exits with trainsuite's own codes, launcher mistakes are one line, and the resume hint of an
interrupted launch is the launch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from suites.run import launch, signals as reliability
from tests.conftest import write_yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH = os.path.join(ROOT, "scripts", "launch")


@pytest.mark.parametrize("argv, words", [
    (["--nproc", "2", "--bogus", "c.yaml"], "unknown option --bogus"),
    (["--nnodes", "2", "--node-rank", "2", "--master-addr", "h", "c.yaml"], "--node-rank must be 0..1"),
    (["--nnodes", "0", "c.yaml"], "--nnodes must be at least 1"),
    (["--nnodes", "2", "c.yaml"], "needs --master-addr"),
])
def test_launcher_mistakes_are_refused(argv, words):
    with pytest.raises(launch.LaunchError, match=words):
        launch.build(argv, env={"CUDA_VISIBLE_DEVICES": ""})


def test_trainsuite_options_after_the_config_pass_through():
    cmd, _ = launch.build(["predict", "c.yaml", "--input", "a.jsonl", "--output", "b.jsonl", "--nproc", "2"],
                          env={"CUDA_VISIBLE_DEVICES": ""})
    assert "--nproc-per-node=2" in cmd
    assert cmd[cmd.index("--worker") + 1:] == ["predict", "c.yaml", "train.use_cpu=true", "--input", "a.jsonl",
                                              "--output", "b.jsonl"]


@pytest.mark.parametrize("visible, n", [("0,1,2,3", 4), ("GPU-a1,GPU-b2", 2), ("0,-1,2", 1), ("-1", 0), ("", 0),
                                        (" ", 0), ("2, 3", 2)])
def test_visible_gpus_reads_cuda_visible_devices_as_cuda_does(visible, n):
    assert launch.visible_gpus({"CUDA_VISIBLE_DEVICES": visible}) == n


def test_resume_command_of_a_launch():
    assert launch.resume_command(["--nproc", "2", "c.yaml", "output_dir=r", "--overwrite"]) == \
        "scripts/launch --nproc 2 c.yaml output_dir=r --resume"
    # resumed before from a given checkpoint: continue from the newest one instead
    assert launch.resume_command(["c.yaml", "--resume", "r/checkpoint-4", "seed=2"]) == \
        "scripts/launch c.yaml seed=2 --resume"
    assert launch.resume_command(["c.yaml", "--resume", "seed=2"]) == "scripts/launch c.yaml seed=2 --resume"


def test_interrupt_hint_of_a_launched_run_is_the_launch(tmp_path, monkeypatch):
    from types import SimpleNamespace

    stop = reliability.GracefulStop()
    stop.received, stop.saved_step = signal.SIGTERM, 7
    trainer = SimpleNamespace(args=SimpleNamespace(output_dir=str(tmp_path)),
                              callback_handler=SimpleNamespace(callbacks=[stop]))
    cfg = SimpleNamespace(source_path="c.yaml", source_overrides=["train.use_cpu=true"])
    monkeypatch.setenv(launch.COMMAND_ENV, "scripts/launch --nproc 2 c.yaml --resume")
    with pytest.raises(reliability.TrainingInterrupted) as e:
        reliability.raise_if_stopped(trainer, cfg)
    assert str(e.value).endswith("continue with: scripts/launch --nproc 2 c.yaml --resume")


def test_worker_leaves_its_exit_code(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(launch.STATUS_ENV, str(tmp_path))
    monkeypatch.setenv("RANK", "1")
    assert launch.worker(["train", str(tmp_path / "missing.yaml")]) == 2
    assert launch.worker_codes(str(tmp_path)) == {1: 2}
    assert launch.outcome(1, {0: 3, 1: 3}) == 3 and launch.outcome(1, {0: 2}) == 2
    assert launch.outcome(1, {}) == 1 and launch.outcome(0, {0: 0}) == 0


def test_worker_destroys_the_process_group_before_the_interpreter_ends(tmp_path):
    # left to interpreter shutdown, gloo's threads can abort a finished rank (SIGABRT) and fail the launch
    script = textwrap.dedent(f"""
        import torch.distributed as dist
        from suites.run import launch
        dist.init_process_group("gloo", init_method="file://{tmp_path / 'init'}", rank=0, world_size=1)
        code = launch.worker(["train", "{tmp_path / 'missing.yaml'}"])
        print(code, dist.is_initialized())
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[-2:] == ["2", "False"]


def test_a_worker_process_ends_with_its_code_its_messages_and_atexit_handlers(tmp_path):
    # the worker skips the interpreter's teardown (os._exit) but not what a normal exit does before it
    script = textwrap.dedent(f"""
        import atexit, runpy, sys
        atexit.register(lambda: open("{tmp_path / 'atexit-ran'}", "w").close())
        sys.argv = ["launch.py", "--worker", "train", "{tmp_path / 'missing.yaml'}"]
        runpy.run_module("suites.run.launch", run_name="__main__")
        print("not reached")
    """)
    env = {**os.environ, launch.STATUS_ENV: str(tmp_path), "RANK": "0"}
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "not reached" not in proc.stdout
    assert "missing.yaml" in proc.stderr.strip().splitlines()[-1]
    assert launch.worker_codes(str(tmp_path)) == {0: 2} and (tmp_path / "atexit-ran").exists()


FAKE_TORCHRUN = textwrap.dedent("""
    import os, signal, sys, time
    got = []
    signal.signal(signal.SIGTERM, lambda s, f: got.append(s))
    print("ready", flush=True)
    while not got:
        signal.pause()
    time.sleep(0.2)  # a second forwarded signal would arrive here
    # a worker stopped after its checkpoint (exit 3); torchrun itself ends with 1 on a signal
    open(os.path.join(os.environ["TRAINSUITE_LAUNCH_STATUS"], "rank-0"), "w").write("3")
    print("signals", len(got), os.getsid(0) == os.getpid(), flush=True)
    sys.exit(1)
""")


def test_sigterm_to_the_launcher_reaches_torchrun_once_and_exit_code_is_3(tmp_path):
    """A scheduler signals the launcher's pid only: before, the launcher died and torchrun and its
    processes trained on, orphaned, with no checkpoint; and torchrun's exit code 1 hid the 3."""
    fake = tmp_path / "fake_torchrun.py"
    fake.write_text(FAKE_TORCHRUN)
    code = ("import sys; from suites.run.launch import run_torchrun; "
            f"sys.exit(run_torchrun([sys.executable, {str(fake)!r}], dict(__import__('os').environ)))")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": ROOT})
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    assert out.split() == ["signals", "1", "True"]  # once, and torchrun in its own session
    assert "exit code 3: interrupted after saving a checkpoint" in err


def test_a_config_mistake_under_the_launcher_exits_2(tmp_path):
    cfg = write_yaml(tmp_path / "c.yaml", {"task": "classification", "train": {"bogus": 1}})
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([LAUNCH, "--nproc", "2", cfg], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "error: config:" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("scripts/launch: exit code 2")
