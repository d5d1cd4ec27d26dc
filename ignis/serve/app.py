"""The ASGI app of `ignis serve`: OpenAI-compatible endpoints over the continuous-batching
Scheduler.

The engine runs in the scheduler's thread; handlers never run a forward pass. A request's
pieces reach its handler through a sink whose put() hands them to the event loop
(loop.call_soon_threadsafe), so the loop never blocks on generation. Tokenizing and chat
templates run in a one-thread executor. A client that goes away cancels its request (its KV
blocks are freed at the next step); shutdown cancels everything in flight, then closes the
scheduler and the model.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import hmac
import json
import logging
import os
import signal
import time

from starlette.applications import Starlette
from starlette.requests import Request as HTTPRequest
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ignis.errors import IgnisError
from ignis.runtime import toolchat
from ignis.runtime.scheduler import END_OF_STREAM
from ignis.serve import protocol
from ignis.serve.metrics import Metrics
from ignis.serve.protocol import APIError

log = logging.getLogger("ignis.serve")


class ServerState:
    """What the handlers share: the model and its scheduler once loaded, the sequences in
    flight (for queue limits, metrics and cancel-all)."""

    def __init__(self, load, *, max_batch: int, step_tokens: int, api_key: str | None,
                 max_queue: int | None, model_name: str | None):
        self.load = load                  # () -> Model, run in a thread at startup
        self.max_batch = max_batch
        self.step_tokens = step_tokens
        self.api_key = api_key
        self.max_queue = max_queue
        self.model_name = model_name
        self.model = None
        self.scheduler = None
        self.ready = False
        self.closing = False
        self.load_error = None
        self.server = None                # the uvicorn.Server, when run by serve()
        self.active = 0                   # sequences submitted and not finished (event-loop side)
        self.inflight = set()             # handles of requests in flight
        self.prep = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ignis-serve-prep")
        self.metrics = Metrics(self)
        self.started = int(time.time())

    @property
    def waiting(self) -> int:
        return max(0, self.active - self.max_batch)

    @property
    def running(self) -> int:
        return min(self.active, self.max_batch)

    def cancel_all(self) -> None:
        """Stop accepting requests and cancel every one in flight (thread-safe)."""
        self.closing = True
        for h in list(self.inflight):
            h.cancel()

    async def startup(self) -> None:
        try:
            model = await asyncio.to_thread(self.load)
            self.model = model
            if self.model_name is None:
                self.model_name = os.path.splitext(os.path.basename(model.path))[0]
            self.scheduler = model.scheduler(max_batch=self.max_batch,
                                             step_tokens=max(self.step_tokens, self.max_batch))
            self.ready = True
            log.info("ignis serve: model %s loaded (n_ctx %d), ready", self.model_name, model.n_ctx)
        except Exception as exc:          # noqa: BLE001 - reported by serve() as one line
            self.load_error = str(exc) if isinstance(exc, IgnisError) else f"{type(exc).__name__}: {exc}"
            log.error("ignis serve: could not load the model: %s", self.load_error)
            if self.server is not None:
                self.server.should_exit = True

    async def shutdown(self) -> None:
        self.cancel_all()
        self.ready = False
        model, self.model = self.model, None
        if model is not None:
            await asyncio.to_thread(model.close)      # closes the scheduler (cancels what is left)
        self.prep.shutdown(wait=False)


class _Sink:
    """Receives (tag, piece) from the engine thread; hands it to the event loop."""

    def __init__(self, loop):
        self.loop = loop
        self.queue = asyncio.Queue()

    def put(self, item) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:              # the loop is closed: nobody is listening any more
            pass


class _Run:
    """One request's handles as seen from the event loop: pieces as they come, metrics,
    and cleanup (cancel what is unfinished, release the queue slots)."""

    def __init__(self, state: ServerState, handles: list, sink: _Sink, n_prompt: int):
        self.state, self.handles, self.sink = state, handles, sink
        self.n_prompt = n_prompt
        self.left = len(handles)
        self.t0 = time.perf_counter()
        self.last = [None] * len(handles)      # time of the latest piece
        self.counted = [0] * len(handles)      # tokens already timed
        self.closed = False
        state.active += len(handles)
        state.inflight.update(handles)
        state.metrics.prompt_tokens.inc(n_prompt)

    async def next_events(self, request: HTTPRequest | None = None) -> list:
        """The next (tag, piece) events (at least one; all already queued). With a request:
        wake every second to see whether its client went away (then ClientGone)."""
        q = self.sink.queue
        while True:
            try:
                first = await asyncio.wait_for(q.get(), 1.0) if request is not None else await q.get()
                break
            except asyncio.TimeoutError:
                if await request.is_disconnected():
                    raise _ClientGone() from None
        events = [first]
        while True:
            try:
                events.append(q.get_nowait())
            except asyncio.QueueEmpty:
                break
        now = time.perf_counter()
        for tag, piece in events:
            if piece is END_OF_STREAM:
                self.left -= 1
                continue
            h = self.handles[tag]
            n = len(h.result.tokens)
            if self.last[tag] is None:
                self.state.metrics.ttft.observe(now - self.t0)
            else:
                k = max(1, n - self.counted[tag])
                for _ in range(min(k, 64)):
                    self.state.metrics.itl.observe((now - self.last[tag]) / k)
            self.last[tag], self.counted[tag] = now, n
        return events

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        metrics = self.state.metrics
        for h in self.handles:
            if not h.done:
                h.cancel()
                metrics.finished.labels("cancelled").inc()
            else:
                metrics.finished.labels("error" if h.error is not None else h.result.finish_reason).inc()
            metrics.generated_tokens.inc(len(h.result.tokens))
            self.state.inflight.discard(h)
        self.state.active -= len(self.handles)

    @property
    def completion_tokens(self) -> int:
        return sum(len(h.result.tokens) for h in self.handles)


class _ClientGone(Exception):
    pass


# -- endpoints ---------------------------------------------------------------------------------

def _error(exc: APIError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


def _endpoint(name: str, auth: bool = True, ready: bool = True):
    """Wrap a handler: API key, readiness, errors as OpenAI's error JSON, request metrics."""
    def wrap(func):
        @functools.wraps(func)
        async def handler(request: HTTPRequest):
            state: ServerState = request.app.state.ignis
            try:
                if auth and state.api_key is not None:
                    given = request.headers.get("authorization", "")
                    scheme, _, token = given.partition(" ")
                    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(),
                                                                            state.api_key.encode()):
                        raise APIError("invalid or missing API key: send 'Authorization: Bearer <key>'",
                                       status=401, type_="authentication_error", code="invalid_api_key")
                if ready and state.closing:
                    raise APIError("the server is shutting down", status=503, type_="unavailable_error",
                                   headers={"Retry-After": "5"})
                if ready and not state.ready:
                    raise APIError("the model is loading", status=503, type_="unavailable_error",
                                   headers={"Retry-After": "1"})
                response = await func(request, state)
            except APIError as exc:
                response = _error(exc)
            except _ClientGone:
                response = Response(status_code=499)
            state.metrics.requests.labels(name, str(response.status_code)).inc()
            return response
        return handler
    return wrap


async def _json(request: HTTPRequest):
    raw = await request.body()
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise APIError(f"the request body is not valid JSON: {exc}") from None


async def _prep(state: ServerState, func, *args):
    """Run tokenizer / template work off the event loop; ignis errors become 400s."""
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(state.prep, functools.partial(func, *args))
    except IgnisError as exc:
        raise APIError(str(exc), param=getattr(exc, "param", None)) from None


def _submit(state: ServerState, requests, sink):
    """Submit each prompt's Request (n completions each); tag i*n + j goes to completion j of
    prompt i, the request's choice index."""
    out = []
    for i, request in enumerate(requests):
        n = request.n
        handles = state.scheduler.submit(request, sink=sink, tag=[i * n + j for j in range(n)])
        out.extend(handles if isinstance(handles, list) else [handles])
    return out


async def _generate(request: HTTPRequest, state: ServerState, kind: str):
    req = protocol.parse(await _json(request), kind, state.max_batch)
    model = state.model
    plan = None
    if kind == "chat":      # the tools rendered, the grammar of valid calls made (ignis.runtime.toolchat)
        plan = await _prep(state, toolchat.prepare, model, req.messages, req.tools,
                           req.json_schema if req.tools is not None else None)
        prompts = [plan.prompt]
    else:
        prompts = req.prompts
    want = model.n_ctx if req.max_tokens is None else req.max_tokens
    # compiled before anything is queued: a bad schema, regex or grammar is a 400
    constraint = await _prep(state, toolchat.request_constraint, model, plan, req.json_schema, req.regex,
                             req.grammar)
    requests = []
    for i, prompt in enumerate(prompts):
        where = "messages" if kind == "chat" else "prompt" if len(prompts) == 1 else f"prompt[{i}]"
        requests.append(await _prep(state, functools.partial(
            model.request, prompt, want, req.temperature, req.top_k, req.top_p, req.min_p, req.repeat_penalty,
            req.presence_penalty, req.frequency_penalty, req.seed, req.stop, req.ignore_eos, n=req.n,
            logprobs=req.logprobs, constraint=constraint, name=where)))
    all_ids = [list(r.ids) for r in requests]
    max_tokens = requests[0].max_tokens
    n_prompt = sum(len(ids) for ids in all_ids)
    # what each choice (i*n + j) echoes: its prompt's text
    echoes = [""] * (len(prompts) * req.n)
    if req.echo:
        echoes = [p if isinstance(p, str) else model.detokenize(ids)
                  for p, ids in zip(prompts, all_ids) for _ in range(req.n)]
    if max_tokens == 0:           # nothing to generate: no need to run the prompt
        return _empty(kind, state, req, n_prompt, echoes)
    if state.max_queue is not None and state.active + len(echoes) - state.max_batch > state.max_queue:
        raise APIError(f"too many requests waiting ({state.waiting} queued, at most {state.max_queue}); "
                       "retry later", status=503, type_="unavailable_error", code="queue_full",
                       headers={"Retry-After": "1"})
    sink = _Sink(asyncio.get_running_loop())
    try:
        handles = _submit(state, requests, sink)
    except IgnisError as exc:
        raise APIError(str(exc)) from None
    run = _Run(state, handles, sink, n_prompt)
    rid = protocol.new_id(kind)
    if req.stream:
        return StreamingResponse(_stream(run, kind, rid, state.model_name, req, echoes,
                                         toolchat.parsers(plan, len(handles))),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    try:
        while run.left:
            await run.next_events(request)
    finally:
        run.close()
    for h in handles:
        if h.error is not None:
            raise APIError(f"generation failed: {h.error}", status=500, type_="server_error")
    texts = [echo + h.result.text for echo, h in zip(echoes, handles)]
    use = protocol.usage(n_prompt, run.completion_tokens)
    lps = None
    if req.logprobs is not None:
        lps = [protocol.logprobs(kind, model.tokenizer, h.result.tokens, h.result.logprobs, len(echo))
               for echo, h in zip(echoes, handles)]
    messages, reasons = toolchat.replies(plan, texts, [h.result.finish_reason for h in handles])
    return JSONResponse(protocol.response(kind, rid, state.model_name, texts, reasons, use, lps, messages))


def _empty(kind: str, state: ServerState, req, n_prompt: int, echoes: list):
    rid, use, k = protocol.new_id(kind), protocol.usage(n_prompt, 0), len(echoes)
    lps = None if req.logprobs is None else [protocol.logprobs(kind, None, [], [])] * k
    if not req.stream:
        return JSONResponse(protocol.response(kind, rid, state.model_name, echoes, ["length"] * k, use, lps))
    created = int(time.time())

    async def chunks():
        choices = [(i, "" if kind == "chat" else echoes[i], "length", kind == "chat", None) for i in range(k)]
        yield _sse(protocol.chunk(kind, rid, state.model_name, created, choices, req.include_usage))
        if req.include_usage:
            yield _sse(protocol.chunk(kind, rid, state.model_name, created, [], True, use))
        yield "data: [DONE]\n\n"
    return StreamingResponse(chunks(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def _sse(body) -> str:
    return f"data: {json.dumps(body, ensure_ascii=False, separators=(',', ':'))}\n\n"


async def _stream(run: _Run, kind: str, rid: str, model_name: str, req, echoes: list, parsers=None):
    """SSE chunks: a first chunk per choice (the role / the echoed prompt), then the text as
    it comes (everything already queued goes out in one chunk per choice), a last chunk per
    choice with its finish reason, the usage chunk when asked for, then [DONE]. parsers: a
    CallParser per choice when replies may hold tool calls (text then goes out as deltas)."""
    created = int(time.time())
    n = len(run.handles)
    sent = [0] * n                  # logprobs entries already sent, per choice
    offset = [len(echo) for echo in echoes]      # text_offset of the next token (completions)
    tokenizer = run.state.model.tokenizer if req.logprobs is not None else None

    def out(choices, use=None):
        return _sse(protocol.chunk(kind, rid, model_name, created, choices, req.include_usage, use))

    def new_logprobs(i, final=False):
        if tokenizer is None:
            return None
        result = run.handles[i].result
        end = len(result.tokens) if final else len(result.logprobs)
        lp = protocol.logprobs(kind, tokenizer, result.tokens[sent[i]:end], result.logprobs[sent[i]:end],
                               offset[i])
        sent[i] = end
        if kind != "chat" and lp["tokens"]:
            offset[i] = lp["text_offset"][-1] + len(lp["tokens"][-1])
        return lp

    try:
        if kind == "chat":
            yield out([(i, "", None, True, None) for i in range(n)])
        elif any(echoes):
            yield out([(i, echoes[i], None, False, None) for i in range(n)])
        while run.left:
            events = await run.next_events()
            texts, finished = {}, []
            for tag, piece in events:
                if piece is END_OF_STREAM:
                    finished.append(tag)
                else:
                    texts[tag] = texts.get(tag, "") + piece
            if texts and parsers is not None:
                for i in sorted(texts):
                    deltas = parsers[i].feed(texts[i])
                    for k, delta in enumerate(deltas):
                        yield out([(i, delta, None, False, new_logprobs(i) if k == 0 else None)])
            elif texts:
                yield out([(i, texts[i], None, False, new_logprobs(i)) for i in sorted(texts)])
            for i in finished:
                h = run.handles[i]
                if h.error is not None:
                    err = APIError(f"generation failed: {h.error}", status=500, type_="server_error")
                    yield _sse(err.body())
                    continue
                reason = h.result.finish_reason
                if parsers is not None:
                    for delta in parsers[i].finish():
                        yield out([(i, delta, None, False, None)])
                    reason = parsers[i].finish_reason(reason)
                yield out([(i, None if kind == "chat" else "", reason, False, new_logprobs(i, final=True))])
        if req.include_usage:
            yield out([], protocol.usage(run.n_prompt, run.completion_tokens))
        yield "data: [DONE]\n\n"
    finally:
        run.close()      # a client gone mid-stream lands here (the task is cancelled): cancel


@_endpoint("page", auth=False, ready=False)
async def page(request, state):
    """The chat page (ignis/serve/page/index.html): it asks for the API key itself."""
    from ignis.serve.page import html
    return Response(html(), media_type="text/html; charset=utf-8")


@_endpoint("chat_completions")
async def chat_completions(request, state):
    return await _generate(request, state, "chat")


@_endpoint("completions")
async def completions(request, state):
    return await _generate(request, state, "completion")


@_endpoint("models")
async def models(request, state):
    model = state.model
    return JSONResponse({"object": "list", "data": [{
        "id": state.model_name, "object": "model", "created": state.started, "owned_by": "ignis",
        "meta": {"n_ctx": model.n_ctx, "n_vocab": model.n_vocab, "max_batch": state.max_batch}}]})


@_endpoint("tokenize")
async def tokenize(request, state):
    body = await _json(request)
    content = body.get("content") if isinstance(body, dict) else None
    if not isinstance(content, str):
        raise APIError(f"content must be a string, got {type(content).__name__}", param="content")
    return JSONResponse({"tokens": await _prep(state, state.model.tokenize, content)})


@_endpoint("detokenize")
async def detokenize(request, state):
    body = await _json(request)
    tokens = body.get("tokens") if isinstance(body, dict) else None
    if not isinstance(tokens, list):
        raise APIError(f"tokens must be a list of token ids, got {type(tokens).__name__}", param="tokens")
    return JSONResponse({"content": await _prep(state, state.model.detokenize, tokens)})


@_endpoint("health", auth=False, ready=False)
async def health(request, state):
    if state.ready and not state.closing:
        return JSONResponse({"status": "ok"})
    if state.load_error is not None:
        raise APIError(f"the model failed to load: {state.load_error}", status=500, type_="server_error")
    raise APIError("the model is loading" if not state.closing else "the server is shutting down",
                   status=503, type_="unavailable_error", headers={"Retry-After": "1"})


@_endpoint("metrics", ready=False)
async def metrics(request, state):
    return Response(state.metrics.render(), media_type=state.metrics.content_type)


def create_app(model, *, max_batch: int = 8, step_tokens: int = 256, api_key: str | None = None,
               max_queue: int | None = None, model_name: str | None = None) -> Starlette:
    """The Starlette app. model: an ignis Model, or a function returning one (called in a
    thread at startup; /health answers 503 until it returns)."""
    load = model if callable(model) and not hasattr(model, "scheduler") else (lambda: model)
    state = ServerState(load, max_batch=max_batch, step_tokens=step_tokens, api_key=api_key,
                        max_queue=max_queue, model_name=model_name)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        loader = asyncio.create_task(state.startup())
        try:
            yield
        finally:
            state.cancel_all()
            with contextlib.suppress(BaseException):
                await loader
            await state.shutdown()

    routes = [
        Route("/", page, methods=["GET"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/completions", completions, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/models", models, methods=["GET"]),
        Route("/tokenize", tokenize, methods=["POST"]),
        Route("/detokenize", detokenize, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/v1/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.ignis = state
    return app


def serve(model_path: str, *, host: str = "127.0.0.1", port: int = 8080, n_ctx: int | None = None,
          threads: int | None = None, max_batch: int = 8, api_key: str | None = None,
          max_queue: int | None = None, log_level: str = "info") -> int:
    """Run the server until SIGINT / SIGTERM (graceful: requests in flight are cancelled)."""
    import uvicorn

    import ignis

    app = create_app(lambda: ignis.load(model_path, n_ctx=n_ctx, threads=threads), max_batch=max_batch,
                     api_key=api_key, max_queue=max_queue)
    state: ServerState = app.state.ignis

    class _Server(uvicorn.Server):
        def handle_exit(self, sig, frame):
            state.cancel_all()            # in-flight generations end at the next step
            super().handle_exit(sig, frame)
            if sig == signal.SIGTERM:     # a requested stop: exit 0 (uvicorn would re-raise it)
                self._captured_signals = [s for s in self._captured_signals if s != signal.SIGTERM]

    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="on",
                            timeout_graceful_shutdown=10, access_log=False)
    server = _Server(config)
    state.server = server
    server.run()
    if state.load_error is not None:
        raise IgnisError(state.load_error)
    if not server.started:
        raise IgnisError(f"could not serve on {host}:{port} (see the log above)")
    return 0
