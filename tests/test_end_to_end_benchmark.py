"""benchmarks/end_to_end.py in its CPU smoke mode: every family, ours and plain, one repeat, tiny
data. It checks the harness runs and reports what it should; timings are not judged here
(docs/benchmarks.md holds them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_end_to_end_smoke(tmp_path):
    out = tmp_path / "e2e.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "end_to_end.py"), "--smoke",
                           "--workdir", str(tmp_path / "work"), "--json-out", str(out)],
                          env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    report = json.loads(out.read_text())
    assert set(report["families"]) == {"classification", "seq2seq", "sft"}
    for family, s in report["families"].items():
        assert s["ratio_wall_median"] > 0
        for side in ("ours", "plain"):
            assert len(s[side]["wall_s"]["all"]) == 1 and s[side]["user_cpu_s"]["median"] > 0
        phases = s["ours_phases_median"]
        for key in ("startup_and_imports", "encode", "train_loop_with_evaluations_and_checkpoints",
                    "report_and_figures", "final_save"):
            assert key in phases, (family, key)
        assert len(s["ours_each_evaluation_median"]) == 1  # one epoch, one evaluation
    assert "ours/plain wall" in proc.stdout
