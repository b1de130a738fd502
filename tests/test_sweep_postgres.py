"""Two `trainsuite sweep` processes share one study in a real PostgreSQL server, started here in a
temporary folder on a free port (Debian's `postgresql` package, or initdb on PATH); skipped, saying
why, where no server binary is found or it cannot start."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile

import pytest

from conftest import write_yaml
from sweep_common import REPO, read_sweep, sweep_cmd, sweep_config


def _binaries() -> str | None:
    found = shutil.which("initdb")
    if found:
        return os.path.dirname(found)
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.isfile(os.path.join(folder, "initdb")):
            return folder
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_user():
    """PostgreSQL refuses to run as root: as root, the server runs as the `postgres` (or `nobody`) user."""
    if os.geteuid() != 0:
        return None, None
    for name in ("postgres", "nobody"):
        try:
            user = pwd.getpwnam(name)
        except KeyError:
            continue

        def drop(user=user):
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)

        return drop, user
    pytest.skip("running as root and no `postgres` or `nobody` user to run PostgreSQL as")


@pytest.fixture
def postgres_url():
    pytest.importorskip("psycopg", reason="psycopg (the sweep extra) is not installed")
    bindir = _binaries()
    if bindir is None:
        pytest.skip("no PostgreSQL server binary (initdb) on PATH or in /usr/lib/postgresql/*/bin")
    drop, user = _as_user()
    folder = tempfile.mkdtemp(prefix="trainsuite-pg-")  # not under pytest's root-only tmp folder
    data = os.path.join(folder, "data")
    if user is not None:
        os.chown(folder, user.pw_uid, user.pw_gid)
    port = _free_port()

    def pg(*args):
        return subprocess.run([os.path.join(bindir, args[0]), *args[1:]], capture_output=True, text=True,
                              preexec_fn=drop, timeout=120, cwd=folder)

    try:
        made = pg("initdb", "-D", data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8")
        if made.returncode != 0:
            pytest.skip(f"initdb failed: {made.stderr.strip()[-300:]}")
        started = pg("pg_ctl", "-D", data, "-l", os.path.join(folder, "log"), "-w", "start",
                     "-o", f"-p {port} -h 127.0.0.1 -k {folder}")
        if started.returncode != 0:
            pytest.skip(f"the PostgreSQL server did not start: {started.stderr.strip()[-300:]}")
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        if os.path.isdir(data):
            pg("pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)


def test_two_workers_in_separate_processes_complete_one_study(tmp_path, cls_config, postgres_url):
    cfg = sweep_config(cls_config, trials=2)
    path = write_yaml(tmp_path / "c.yaml", cfg)
    args = ("--storage", postgres_url, "--study", "shared")
    procs = [subprocess.Popen(sweep_cmd(path, *args), cwd=REPO, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errs = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs[0][-2000:] + errs[1][-2000:]
    import optuna

    study = optuna.load_study(study_name="shared", storage=postgres_url)
    trials = [t for t in study.trials if not t.user_attrs.get("surplus")]
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # one each: no trial run twice
    assert sorted(t["dir"] for t in read_sweep(cfg["output_dir"])["trials"]) == ["trial-000", "trial-001"]
