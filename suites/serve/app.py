"""The HTTP face of `trainsuite serve`: OpenAI-compatible endpoints on FastAPI.

    GET  /v1/models             the run, as the one model served
    POST /v1/chat/completions   SFT runs: messages rendered with the run's chat template
    POST /v1/completions        SFT runs: a raw prompt
    POST /v1/classify           classification runs: {"input": str | [str]} -> label, score, probabilities
    GET  /stats                 not OpenAI's: requests served and the sizes of the batches generated

Completions go through the batcher (batcher.py); streaming answers are server-sent events `data: {...}`
ending with `data: [DONE]`. Errors have the OpenAI shape {"error": {message, type, param, code}}.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import threading
import time
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from .batcher import Batcher, Job
from .schemas import ApiError, ChatRequest, ClassifyRequest, CompletionRequest, Sampling

MAX_STOP_STRINGS = 4  # as the OpenAI API


def build_app(served, batcher: Batcher | None, api_key: str | None = None) -> FastAPI:
    app = FastAPI(title=f"trainsuite serve: {served.name}", docs_url=None, redoc_url=None, openapi_url=None)
    created = int(time.time())
    counts = {"classified": 0}  # requests answered by /v1/classify
    classify_lock = threading.Lock()  # classification runs: one forward pass at a time on the model

    @app.middleware("http")
    async def check_key(request: Request, call_next):
        if api_key:
            given = request.headers.get("authorization", "")
            token = given[7:] if given[:7].lower() == "bearer " else ""
            if not hmac.compare_digest(token.encode(), api_key.encode()):
                return _error(ApiError(401, "Incorrect or missing API key: send `Authorization: Bearer KEY` "
                                       "with the key the server was started with", code="invalid_api_key"))
        return await call_next(request)

    @app.exception_handler(ApiError)
    async def api_error(request, exc: ApiError):
        return _error(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        if first.get("type") == "json_invalid":
            return _error(ApiError(400, "the request body is not valid JSON"))
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        where = ".".join(loc) or None
        message = f"{where or 'the request body'}: {first.get('msg', 'invalid')}"
        return _error(ApiError(400, message, param=where))

    @app.exception_handler(HTTPException)
    async def http_error(request, exc: HTTPException):
        kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
        return _error(ApiError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}", kind=kind))

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [_model_card(served, created)]}

    @app.get("/v1/models/{model_id}")
    async def model(model_id: str):
        if model_id != served.name:
            raise ApiError(404, f"model {model_id!r} is not served here; this server serves {served.name!r}",
                           param="model", code="model_not_found")
        return _model_card(served, created)

    @app.get("/stats")
    async def stats():
        sizes = batcher.batch_sizes if batcher is not None else {}
        return {"model": served.name, "requests": batcher.submitted if batcher is not None else counts["classified"],
                "batch_sizes": {str(k): v for k, v in sorted(sizes.items())}}

    @app.post("/v1/chat/completions")
    async def chat(req: ChatRequest):
        _needs(served, "sft", "/v1/chat/completions")
        prompt = _chat_prompt(served, req)
        return await _complete(served, batcher, req, prompt, chat=True)

    @app.post("/v1/completions")
    async def completions(req: CompletionRequest):
        _needs(served, "sft", "/v1/completions")
        prompt = req.prompt if isinstance(req.prompt, str) else (req.prompt[0] if len(req.prompt) == 1 else None)
        if prompt is None:
            raise ApiError(400, "prompt: one prompt per request (a string, or a list of one)", param="prompt")
        return await _complete(served, batcher, req, prompt, chat=False)

    @app.post("/v1/classify")
    async def classify(req: ClassifyRequest):
        _needs(served, "classification", "/v1/classify")
        texts = [req.input] if isinstance(req.input, str) else list(req.input)
        if not texts or not all(texts):
            raise ApiError(400, "input: give a non-empty text or a list of non-empty texts", param="input")
        counts["classified"] += 1
        from .classify import classify as run

        def locked():
            with classify_lock:
                return run(served, texts)

        rows = await run_in_threadpool(locked)
        return {"object": "list", "model": served.name, "data": [{"index": i, **r} for i, r in enumerate(rows)]}

    return app


def _error(exc: ApiError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


def _model_card(served, created: int) -> dict:
    return {"id": served.name, "object": "model", "created": created, "owned_by": "trainsuite",
            "task": served.task}


def _needs(served, task: str, path: str) -> None:
    if served.task != task:
        other = "/v1/classify" if served.task == "classification" else "/v1/chat/completions or /v1/completions"
        raise ApiError(400, f"{path} serves {task} runs; {served.name} is a {served.task} run: use {other}")


def _chat_prompt(served, req: ChatRequest) -> str:
    from jinja2 import TemplateError

    tok = served.tokenizer
    if tok.chat_template is None:
        raise ApiError(400, f"{served.name} was trained on plain prompts and its tokenizer has no chat template: "
                       "use /v1/completions")
    try:
        return tok.apply_chat_template([m.as_turn() for m in req.messages], add_generation_prompt=True,
                                       tokenize=False)
    except TemplateError as exc:
        raise ApiError(400, f"messages: the run's chat template refused them: {exc}", param="messages") from None


def _job(served, req: Sampling, prompt: str, emit) -> Job:
    """The request as a batcher job; unset fields take the run's generation settings (config `generation:`)."""
    if req.n != 1:
        raise ApiError(400, f"n: only n=1 is supported (got {req.n})", param="n")
    stop = req.stop_strings()
    if len(stop) > MAX_STOP_STRINGS:
        raise ApiError(400, f"stop: at most {MAX_STOP_STRINGS} stop strings", param="stop")
    gen = served.cfg.generation
    max_new = req.max_tokens or req.max_completion_tokens or gen.max_new_tokens
    temperature = req.temperature if req.temperature is not None else (gen.temperature if gen.do_sample else 0.0)
    top_p = req.top_p if req.top_p is not None else (gen.top_p if gen.do_sample else 1.0)
    ids = served.tokenizer(prompt, add_special_tokens=False)["input_ids"]  # as `trainsuite predict` encodes
    if not ids:
        raise ApiError(400, "the prompt is empty", param="prompt")
    if served.context and len(ids) + max_new > served.context:
        raise ApiError(400, f"the prompt ({len(ids)} tokens) plus max_tokens ({max_new}) exceed the model's "
                       f"context of {served.context} tokens", param="max_tokens", code="context_length_exceeded")
    return Job(ids, max_new, None if temperature == 0 else (temperature, top_p), stop, emit)


async def _complete(served, batcher: Batcher, req: Sampling, prompt: str, chat: bool):
    loop, events = asyncio.get_running_loop(), asyncio.Queue()

    def emit(event):  # on the batcher's thread
        try:
            loop.call_soon_threadsafe(events.put_nowait, event)
        except RuntimeError:  # the loop is gone (server shut down): nobody waits for this answer
            pass

    job = _job(served, req, prompt, emit)
    batcher.submit(job)
    head = {"id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}", "created": int(time.time()),
            "model": served.name}
    usage = lambda tokens: {"prompt_tokens": len(job.prompt_ids), "completion_tokens": tokens,  # noqa: E731
                            "total_tokens": len(job.prompt_ids) + tokens}
    if req.stream:
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        return StreamingResponse(_stream(events, head, chat, usage, include_usage), media_type="text/event-stream")
    parts = []
    while True:
        event = await events.get()
        if event[0] == "text":
            parts.append(event[1])
        elif event[0] == "error":
            raise ApiError(500, event[1], kind="server_error")
        else:
            _, finish, tokens = event
            break
    text = "".join(parts)
    choice = {"index": 0, "finish_reason": finish, "logprobs": None}
    choice.update({"message": {"role": "assistant", "content": text}} if chat else {"text": text})
    return {**head, "object": "chat.completion" if chat else "text_completion", "choices": [choice],
            "usage": usage(tokens)}


async def _stream(events: asyncio.Queue, head: dict, chat: bool, usage, include_usage: bool):
    obj = "chat.completion.chunk" if chat else "text_completion"

    def chunk(piece: dict | None, finish=None, **extra) -> str:
        if chat:
            choices = [{"index": 0, "delta": piece or {}, "finish_reason": finish, "logprobs": None}]
        else:
            choices = [{"index": 0, "text": (piece or {}).get("content", ""), "finish_reason": finish,
                        "logprobs": None}]
        body = {**head, "object": obj, "choices": choices if piece is not None or finish else [], **extra}
        return f"data: {json.dumps(body)}\n\n"

    if chat:
        yield chunk({"role": "assistant", "content": ""})
    while True:
        event = await events.get()
        if event[0] == "text":
            yield chunk({"content": event[1]})
        elif event[0] == "error":
            yield f"data: {json.dumps(ApiError(500, event[1], kind='server_error').body())}\n\n"
            return
        else:
            _, finish, tokens = event
            yield chunk({}, finish)
            if include_usage:
                yield chunk(None, usage=usage(tokens))
            break
    yield "data: [DONE]\n\n"
