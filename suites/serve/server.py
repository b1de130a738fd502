"""`trainsuite serve RUN_DIR`: load the run's model once and answer HTTP requests with uvicorn."""

from __future__ import annotations

import importlib.util
import ipaddress
import logging
import os

from ..errors import UserError

log = logging.getLogger("trainsuite")

EXTRA = ("fastapi", "uvicorn")
API_KEY_ENV = "TRAINSUITE_API_KEY"


def missing_extra(modules=EXTRA) -> str | None:
    """The one-line error when the `serve` extra is not installed, else None."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if not missing:
        return None
    return (f"serve needs {', '.join(missing)}, which are not installed: "
            "pip install 'trainsuite[serve]' (or pip install fastapi uvicorn)")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: assume it may be reachable from elsewhere
        return False


def prepare(run_dir: str, api_key: str | None, max_batch: int):
    """The app and its batcher (started) for RUN_DIR; the caller closes the batcher when done."""
    problem = missing_extra()
    if problem:
        raise UserError(problem)
    from .app import build_app
    from .loading import load_run

    if max_batch < 1:
        raise UserError(f"serve: --max-batch must be at least 1, got {max_batch}")
    served = load_run(run_dir)  # a mistake in RUN_DIR fails before any model loads
    batcher = None
    if served.task == "sft":
        from ..generation import generation_settings
        from .batcher import Batcher

        if served.cfg.generation.num_beams > 1:
            log.info("serve: generation.num_beams=%d is not used: each reply is one sequence, greedy or sampled",
                     served.cfg.generation.num_beams)
        batcher = Batcher(served.model, served.tokenizer, served.stop_ids,
                          generation_settings(served.cfg.generation), max_batch).start()
    return served, batcher, build_app(served, batcher, api_key)


def serve(run_dir: str, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
          max_batch: int = 8) -> None:
    api_key = api_key or os.environ.get(API_KEY_ENV) or None
    served, batcher, app = prepare(run_dir, api_key, max_batch)
    import uvicorn

    if not is_loopback(host) and not api_key:
        log.warning("serve: listening on %s without --api-key: anyone who can reach this address can use the "
                    "model (set --api-key or %s)", host, API_KEY_ENV)
    log.info("serving %s (%s run) as model %r on http://%s:%d/v1%s", run_dir, served.task, served.name, host,
             port, f", batches of up to {max_batch}" if batcher else "")
    try:
        uvicorn.run(app, host=host, port=port, log_level="info")
    except KeyboardInterrupt:  # uvicorn shut down cleanly on Ctrl-C, then raises the signal again
        pass
    finally:
        if batcher is not None:
            batcher.close()
