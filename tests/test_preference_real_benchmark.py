"""benchmarks/preference_real.py in its smoke mode: a tiny random Llama with a ChatML template on the demo
pairs, ours and plain trl.DPOTrainer, one pair of runs. It checks the harness runs, that both sides trained on
the same batches from the same LoRA start (per-step losses agree: log 2 at step 1, then within the share of
trl's extra trained newline), and that it reports what it should; timings are not judged here."""

from __future__ import annotations

import math
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_preference_real_smoke(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    import preference_real

    report = preference_real.main(["--smoke", "--repeats", "1", "--steps", "3", "--rows", "16", "--rule",
                                   "--keep", str(tmp_path / "work")])
    assert [r["side"] for r in report["runs"]] == ["ours", "plain_trl"]
    for run in report["runs"]:
        assert run["wall_s"] > 0 and run["peak_rss_gib"] > 0 and sorted(run["losses"]) == [1, 2, 3]
    first = report["loss_per_step"][1]
    assert first["ours"] == pytest.approx(math.log(2), abs=1e-4) == first["plain_trl"]
    assert report["max_abs_loss_diff"] < 1e-2
    assert set(report["rule"]) == {"base", "ours", "plain_trl"} and report["rule"]["base"]["of"] == 24
