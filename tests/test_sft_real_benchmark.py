"""benchmarks/sft_real.py in its smoke mode: a tiny random Llama with a ChatML template and toy en->de
pairs, ours and plain trl, one pair. It checks the harness runs, that both sides trained on the same
batches (per-step losses on our tokens agree), and that it reports what it should; timings are not
judged here (docs/benchmarks.md holds them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_sft_real_smoke(tmp_path):
    out = tmp_path / "sft_real.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "sft_real.py"), "--smoke",
                           "--workdir", str(tmp_path / "work"), "--json-out", str(out)],
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    report = json.loads(out.read_text())
    s = report["summary"]
    for side in ("ours", "trl"):
        assert s[side]["wall_s"] > 0 and s[side]["peak_rss_gib"] > 0
        for key in ("bleu_before", "bleu_after", "eval_loss_before", "eval_loss_after"):
            assert key in s[side]
        assert len(report["runs"][side][0]["step_loss"]) == 4  # --smoke: 4 steps, one loss each
    # trl also trains the newline after <|im_end|>; without it the losses are ours, batch by batch
    assert s["newline_share_of_trl_tokens"] > 0
    assert s["step_loss_max_abs_diff_on_our_tokens"][0] < 1e-3
    assert "ours/trl wall" in proc.stdout and "trl on our tokens" in proc.stdout
