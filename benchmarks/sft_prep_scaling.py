"""SFT data preparation against the number of rows: ms/row and peak memory, ours against trl, each
side in its own process (so that peak RSS is its own), on the synthetic chats of data_prep.py.

    OMP_NUM_THREADS=1 python benchmarks/sft_prep_scaling.py                 # 2k, 20k, 80k rows
    OMP_NUM_THREADS=1 python benchmarks/sft_prep_scaling.py --rows 2000 20000

ours: encode + pack inside runner.build (tasks/instruction.py, suites/sft.py); plain: trl.SFTTrainer's
own preparation (tokenize with the assistant mask, pack), on the tokenizer our run trained (saved, then
loaded by the plain process). Prepared-data cache off.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)


def side(which: str, rows: int, workdir: str) -> dict:
    import datasets

    import data_prep

    datasets.disable_progress_bars()
    args = argparse.Namespace(limit=None, sft_rows=rows)
    cfg = data_prep.config_for("sft", args, workdir)
    cfg.data.prepared_cache = False
    tok_dir = os.path.join(workdir, "tokenizer")
    if which == "ours":
        t, _, _, tok, _, _ = data_prep.ours(cfg)
        tok.save_pretrained(tok_dir)
        seconds = t["encode"] + t.get("pack", 0.0)
    else:
        from transformers import AutoTokenizer

        t = data_prep.plain_sft(cfg, workdir, AutoTokenizer.from_pretrained(tok_dir))
        seconds = t["trainer init (tokenize + pack)"]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    return {"side": which, "rows": rows, "prep_s": round(seconds, 3), "ms_per_row": round(1000 * seconds / rows, 3),
            "peak_rss_gib": round(peak, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[2000, 20000, 80000])
    ap.add_argument("--side", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--json-out")
    a = ap.parse_args()
    if a.side:
        print("RESULT " + json.dumps(side(a.side[0], int(a.side[1]), a.side[2])), flush=True)
        return
    results = []
    for rows in a.rows:
        with tempfile.TemporaryDirectory() as workdir:
            for which in ("ours", "plain"):  # ours first: it trains and saves the tokenizer both use
                proc = subprocess.run([sys.executable, __file__, "--side", which, str(rows), workdir],
                                      capture_output=True, text=True)
                line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
                if not line:
                    raise SystemExit(proc.stdout[-2000:] + proc.stderr[-4000:])
                results.append(json.loads(line[-1][7:]))
                print(results[-1], flush=True)
    if a.json_out:
        with open(a.json_out, "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
