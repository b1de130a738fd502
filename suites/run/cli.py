"""The `trainsuite` command line.

    trainsuite train   CONFIG.yaml [dotted.key=value ...] [--overwrite] [--resume [CHECKPOINT]]
    trainsuite eval    CONFIG.yaml [dotted.key=value ...]
    trainsuite predict CONFIG.yaml --input FILE --output FILE [dotted.key=value ...]
    trainsuite inspect CONFIG.yaml [--rows N] [dotted.key=value ...]
    trainsuite report  RUN_DIR [RUN_DIR ...] [--output FILE]
    trainsuite sweep   CONFIG.yaml [--trials N] [--storage URL] [--study NAME] [--workers K] [dotted.key=value ...]
    trainsuite init    {classification,seq2seq,sft,preference} [--output FILE]
    trainsuite serve   RUN_DIR [--host 127.0.0.1] [--port 8000] [--api-key KEY] [--max-batch 8]
    trainsuite export  RUN_DIR --format {safetensors,gguf,onnx} --output DIR [--dtype D] [--quant Q] [--force]

A user mistake (config, data, command line) prints one line `error: ...` and exits with 2.
stdout carries only the command's result (JSON for train/eval/predict/merge): what libraries print
there while the command runs (log dicts, tokenizer-training progress) goes to stderr, or nowhere
with --quiet, so `trainsuite eval c.yaml | jq .eval_accuracy` works.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import warnings

from ..errors import MISTAKES, UserError
from ..config import redact
from . import notices

EXIT_CTRL_C = 130  # the shell's code for a command ended by SIGINT: Ctrl-C before training started

EPILOG = """examples:
  trainsuite train configs/demo.yaml
  trainsuite train configs/demo.yaml train.learning_rate=3e-5 data.max_train_samples=200
  trainsuite eval configs/demo.yaml model.name_or_path=runs/demo
  trainsuite predict configs/demo.yaml model.name_or_path=runs/demo --input rows.jsonl --output preds.jsonl
  trainsuite inspect configs/demo.yaml --rows 5      # the first examples as the model sees them, data counts
  trainsuite report runs/demo                      # rebuild runs/demo/report.html
  trainsuite report runs/a runs/b --output ab.html # compare runs on one page
  trainsuite init classification --output my.yaml  # a commented starter config
  trainsuite merge runs/sft --output runs/sft-merged # fold a LoRA adapter into its base model
  trainsuite sweep configs/demo-sweep.yaml         # hyperparameter search (docs/sweep.md)
  trainsuite serve runs/sft --port 8000             # try the model with any OpenAI client (docs/serve.md)
  trainsuite export runs/sft --format gguf --output runs/sft-gguf  # for llama.cpp/Ollama (docs/export.md)

Any config key can be overridden as dotted.key=value (the value is read as YAML).
train/eval/predict/merge print their results as JSON on stdout; logs go to stderr.
Exit codes: 0 success, 2 a mistake in the config, data or command line,
3 stopped by SIGTERM/SIGINT during training after saving a checkpoint (continue with --resume),
4 stopped by a non-finite loss or gradient (nonfinite: stop),
130 Ctrl-C (SIGINT) before training started (nothing written; a folder the run made is removed)."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="trainsuite", description="Fine-tune transformers for text "
                                "classification, seq2seq and SFT from one YAML config.",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, help_):
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.add_argument("config", help="run config (YAML)")
        sp.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. train.seed=1")
        sp.add_argument("--quiet", action="store_true", help="log warnings and errors only")
        return sp

    t = add("train", "train a model; evaluate on data.eval when given; write OUTPUT_DIR/results.json")
    t.add_argument("--overwrite", action="store_true",
                   help="replace a previous trainsuite run in output_dir (only the files a run writes are deleted)")
    t.add_argument("--resume", nargs="?", const=True, default=None, metavar="CHECKPOINT",
                   help="continue from the latest (or the given) checkpoint in output_dir")
    add("eval", "evaluate model.name_or_path (a checkpoint dir works; for a model.from_config config, the "
        "model trained in output_dir; on the command line it wins over model.from_config) on data.eval; "
        "write the metrics to OUTPUT_DIR/eval_results.json")
    pr = add("predict", "write one JSON line of predictions per input row")
    pr.add_argument("--input", required=True, help="rows to predict (jsonl, csv, tsv, json, parquet), or a plain text file (.txt or no "
                    "table extension, e.g. test.en): one input a line (a source, a text, an SFT user prompt)")
    pr.add_argument("--output", required=True, help="where to write the predictions (JSONL)")
    ins = add("inspect", "print the first training examples as the model sees them (SFT: trained tokens "
              "in green on a terminal, between [[ and ]] when piped) and counts over the data; loads no model")
    ins.add_argument("--rows", type=int, default=3, metavar="N", help="examples to print (default 3)")
    sw = add("sweep", "search hyperparameters on Optuna (the config's sweep: block), each trial a run in "
             "OUTPUT_DIR/trial-NNN; run it again to continue; writes sweep.json, sweep.html, best.yaml")
    sw.add_argument("--trials", type=int, help="trials to finish (default: sweep.trials)")
    sw.add_argument("--storage", metavar="URL", help="study storage: a journal file path or a database URL "
                    "(postgresql://...) that several machines share (default: OUTPUT_DIR/sweep.journal)")
    sw.add_argument("--study", metavar="NAME", help="study name (default: the output_dir's name)")
    sw.add_argument("--workers", type=int, default=1, metavar="K", help="worker processes on this machine")
    help_ = "merge a LoRA run's adapter into its base model (a standalone model)"
    mg = sub.add_parser("merge", help=help_, description=help_)
    mg.add_argument("run_dir", help="run output_dir holding adapter_config.json")
    mg.add_argument("--output", required=True, help="directory for the merged model (new or empty)")
    mg.add_argument("--force", action="store_true", help="replace a non-empty --output")
    help_ = ("export a run's model for a server or runtime: safetensors (vLLM, TGI), gguf (llama.cpp, Ollama), "
             "onnx (classifiers, encoder-decoders)")
    ex = sub.add_parser("export", help=help_, description=help_ + "; see docs/export.md")
    ex.add_argument("run_dir", help="run output_dir (a full model or a LoRA adapter)")
    ex.add_argument("--format", required=True, choices=("safetensors", "gguf", "onnx"))
    ex.add_argument("--output", required=True, help="directory for the export (new or empty)")
    ex.add_argument("--dtype", help="safetensors weights: bf16 (default), fp16 or fp32")
    ex.add_argument("--quant", help="gguf weights: f16 (default) or q8_0")
    ex.add_argument("--force", action="store_true", help="replace a non-empty --output")
    help_ = "rebuild a run's report.html from its files, or compare runs on one page"
    rp = sub.add_parser("report", help=help_, description=help_)
    rp.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run output_dir (finished or interrupted)")
    rp.add_argument("--output", help="the HTML page (default: RUN_DIR/report.html; comparison.html for several)")
    help_ = "write a commented starter config for a task family"
    it = sub.add_parser("init", help=help_, description=help_)
    it.add_argument("family", choices=("classification", "seq2seq", "sft", "preference"))
    it.add_argument("--output", help="file to write (default: print to stdout)")
    it.add_argument("--force", action="store_true", help="replace --output if it exists")
    help_ = "serve a run's model over an OpenAI-compatible HTTP API, for trying and evaluating it (docs/serve.md)"
    sv = sub.add_parser("serve", help=help_, description=help_)
    sv.add_argument("run_dir", help="run output_dir (or a checkpoint-N in it) of an sft or classification run")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    sv.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    sv.add_argument("--api-key", help="require `Authorization: Bearer KEY` (default: $TRAINSUITE_API_KEY, else none)")
    sv.add_argument("--max-batch", type=int, default=8, metavar="N",
                    help="concurrent requests generated together in one batch (default 8)")
    return p


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _setup_logging(quiet: bool) -> None:
    """Our log lines on stderr, set up before anything else is imported: a library's notice at import
    time then meets our handler, which keeps the expected ones (notices.py) at debug level."""
    level = logging.WARNING if quiet else logging.INFO
    root = logging.getLogger()
    before = list(root.handlers)
    logging.basicConfig(level=level, format=LOG_FORMAT, datefmt="%H:%M:%S")
    notices.install([h for h in root.handlers if h not in before])
    logging.getLogger("trainsuite").setLevel(level)
    logging.getLogger("absl").setLevel(logging.WARNING)  # rouge-score logs "Using default tokenizer." per call
    warnings.filterwarnings("ignore", category=FutureWarning)


def _quiet_libraries(quiet: bool) -> None:
    """transformers' and datasets' own verbosity; imports them, so only once the config was read."""
    import datasets
    import transformers

    # datasets' bars are those of its cache files (our prepared-data entries, a line of ours says what
    # was reused or stored); with --quiet transformers' (downloads, Trainer) go too
    datasets.disable_progress_bars()
    if quiet:
        transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_warning()


def run(argv=None) -> int:
    p = parser()
    args, extra = p.parse_known_args(argv)
    # overrides may also come after options (`predict c.yaml --input a --output b key=v`); one
    # without '=' (`train.lr`) is reported by the override parser, naming it, not as argparse's usage
    if extra and (not hasattr(args, "overrides") or any(x.startswith("-") for x in extra)):
        p.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    _setup_logging(getattr(args, "quiet", False))
    try:
        return _command(args)
    except MISTAKES as exc:
        return _last_words(f"error: {redact.scrub(exc)}", exc.exit_code)
    except KeyboardInterrupt as exc:  # Ctrl-C outside training (during training: signals.py, exit 3)
        # runner.train says what stays of a run; before it (imports, the config) nothing was written, and
        # eval/predict write their files at the end, each in one rename
        said = str(exc) or {"train": "before training started; nothing was written", "eval": "nothing was written",
                            "predict": "nothing was written"}.get(args.command, f"{args.command} did not finish")
        return _last_words(f"interrupted: {said}", EXIT_CTRL_C)


def _last_words(line: str, code: int) -> int:
    """The command's last line on stderr, after whatever the libraries still had buffered."""
    sys.stdout.flush()
    sys.stderr.flush()
    print(line, file=sys.stderr, flush=True)
    return code


def _command(args) -> int:
    if args.command == "merge":
        from .merge import merge

        with _stdout_to_stderr(quiet=False):
            results = merge(args.run_dir, args.output, args.force)
        print(json.dumps(results, indent=2))
        return 0
    if args.command in ("report", "init"):
        return _report_or_init(args)
    if args.command == "sweep":
        return _sweep(args)
    if args.command == "export":
        from ..export import export

        with _stdout_to_stderr(quiet=False):
            results = export(args.run_dir, args.format, args.output, args.dtype, args.quant, args.force)
        print(json.dumps(results, indent=2))
        return 0
    if args.command == "serve":
        from ..serve.server import serve

        serve(args.run_dir, args.host, args.port, args.api_key, args.max_batch)
        return 0
    if getattr(args, "overwrite", False) and args.resume is not None:
        raise UserError("--overwrite and --resume exclude each other: --resume continues the run in "
                        "output_dir, --overwrite deletes it and starts again")
    if isinstance(getattr(args, "resume", None), str) and "=" in args.resume and not os.path.isdir(args.resume):
        # `--resume key=value`: argparse took an override for the optional CHECKPOINT
        args.overrides, args.resume = [*args.overrides, args.resume], True
    # the config and the data files' headers are checked before torch/transformers are imported (seconds
    # of CPU): a mistake in either is reported at once (suites/config/validate.py)
    if args.command in ("eval", "predict"):  # a command-line model.name_or_path wins over from_config
        from ..config import inference

        cfg = inference.load(args.config, args.overrides)
    else:
        from .. import config

        cfg = config.load(args.config, args.overrides)
    if args.quiet:
        cfg.train["disable_tqdm"] = True
    if args.command == "predict" and not os.path.isfile(args.input):
        raise UserError(f"--input: file not found: {args.input}")
    redact.install_log_filter(cfg.to_dict())  # no token or password in a log line
    if getattr(cfg, "inference_note", None):
        logging.getLogger("trainsuite").info("%s", cfg.inference_note)
    _quiet_libraries(args.quiet)
    if args.command == "inspect":
        return _inspect(cfg, args)
    from . import lock, runner
    from .signals import RunStopped

    try:
        with _stdout_to_stderr(args.quiet), lock.hold(cfg.output_dir):  # one run per output_dir
            if args.command == "train":
                results = runner.train(cfg, overwrite=args.overwrite, resume=args.resume)
            elif args.command == "eval":
                results = runner.evaluate(cfg)
            else:
                results = runner.predict(cfg, args.input, args.output)
    except RunStopped as exc:
        return _last_words(f"stopped: {redact.scrub(exc)}", exc.exit_code)
    if int(os.environ.get("RANK", "0")) == 0:
        _print_results(results)
    return 0


def _inspect(cfg, args) -> int:
    from .inspect import inspect

    color = sys.stdout.isatty() and not os.environ.get("NO_COLOR")  # piped: plain [[ ]] markers
    with _stdout_to_stderr(args.quiet):
        text = inspect(cfg, args.rows, color)
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:  # `trainsuite inspect c.yaml | head`: as for the result JSON below
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return 0


def _print_results(results: dict) -> None:
    """The result JSON on stdout. A reader that stops early (`trainsuite eval c.yaml | head -3`) closes the
    pipe: the run's work is done and saved, so that is no error and no traceback."""
    try:
        print(json.dumps(results, indent=2, sort_keys=True), flush=True)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's flush at exit would raise again
        os.close(devnull)


@contextlib.contextmanager
def _stdout_to_stderr(quiet: bool):
    """While a command runs, stdout (Python's and file descriptor 1, which native code such as the
    tokenizers trainer writes to) goes to stderr, or to /dev/null with --quiet; the result printed
    afterwards is then all that stdout holds."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no file descriptor 1 (an embedding without one): redirect Python's stdout only
        saved = None
    target = open(os.devnull, "w") if quiet else None
    try:
        if saved is not None:
            os.dup2(target.fileno() if target else 2, 1)
        with contextlib.redirect_stdout(target or sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)
        if target:
            target.close()


def _report_or_init(args) -> int:
    if args.command == "init":
        from .starter import write

        text = write(args.family, args.output, args.force)
        if args.output:
            print(f"wrote {args.output}: edit data.train/data.eval, then `trainsuite train {args.output}`")
        else:
            print(text, end="")
        return 0
    if len(args.run_dirs) == 1 and not args.output:
        from ..sweep.outputs import from_dir, is_sweep_dir

        if is_sweep_dir(args.run_dirs[0]):
            print(f"wrote {from_dir(args.run_dirs[0])}")
            return 0
    from ..outputs import report

    if len(args.run_dirs) == 1:
        path = report.write_report(args.run_dirs[0], args.output)
    else:
        path = report.write_comparison(args.run_dirs, args.output or "comparison.html")
    print(f"wrote {path}")
    return 0


def _sweep(args) -> int:
    from ..sweep.worker import sweep

    summary = sweep(args.config, args.overrides, args.trials, args.storage, args.study, args.workers, args.quiet)
    _print_results({"best": summary["best"], "trials": len(summary["trials"]), "holdout": summary.get("holdout")})
    return 0


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
