"""`trainsuite serve RUN_DIR`: a run's model behind an OpenAI-compatible HTTP API (docs/serve.md).

server.py (the command, uvicorn) -> app.py (FastAPI endpoints; schemas.py) -> batcher.py (the thread that
owns the model and generates requests in batches) and classify.py; loading.py reads the run directory."""
