"""The ASGI app of `ignis serve`: OpenAI-compatible endpoints over the continuous-batching
Scheduler.

The engine runs in the scheduler's thread; handlers never run a forward pass. A request's
pieces reach its handler through a sink whose put() hands them to the event loop
(loop.call_soon_threadsafe), so the loop never blocks on generation. Tokenizing and chat
templates run in a one-thread executor. A client that goes away cancels its request (its KV
blocks are freed at the next step). Shutdown drains: new requests get a 503 while those in
flight finish, for up to shutdown_timeout seconds; what is left then is cancelled and its
client gets an error (a 503, or a stream's last event), never a "stop".
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
import socket
import time

import numpy as np
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request as HTTPRequest
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ignis.errors import IgnisError, KVCacheFullError
from ignis.runtime import toolchat
from ignis.runtime.embedding import check_pooling, embed_request, l2_normalize
from ignis.runtime.scheduler import END_OF_STREAM
from ignis.serve import embeddings as embeddings_api
from ignis.serve import protocol
from ignis.serve.accesslog import AccessLog
from ignis.serve.body import ClientGone, read_json
from ignis.serve.metrics import Metrics
from ignis.serve.protocol import APIError

log = logging.getLogger("ignis.serve")


class ServerState:
    """What the handlers share: the model and its scheduler once loaded, the sequences in
    flight (for queue limits, metrics and cancel-all)."""

    def __init__(self, load, *, max_batch: int, step_tokens: int, api_key: str | None,
                 max_queue: int | None, model_name: str | None, pooling: str | None = None,
                 shutdown_timeout: float = 10.0, spec: str | None = None):
        self.load = load                  # () -> Model, run in a thread at startup
        self.pooling = pooling            # /v1/embeddings: mean, last, cls (None: the file's, else mean)
        self.spec = spec                  # --spec: the speculative decoding of requests that do not say
        self.max_batch = max_batch
        self.step_tokens = step_tokens
        self.api_key = api_key
        self.max_queue = max_queue
        self.model_name = model_name
        self.model = None
        self.scheduler = None
        self.ready = False
        self.closing = False              # no new requests (draining, or shutting down)
        self.shutdown_timeout = shutdown_timeout
        self.drain_deadline = None        # time.monotonic() when what is in flight gets cancelled
        self.n_real_vocab = None          # ids at or past this one are the file's padding, not tokens
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

    def reserve(self, k: int) -> None:
        """Count k sequences as in flight, or refuse them (503 while closing or past
        --max-queue waiting sequences). Called on the event loop with no await between the
        check and the count, so concurrent requests cannot all pass the same check."""
        if self.closing:
            raise _shutting_down()
        if self.max_queue is not None:
            if k > self.max_batch + self.max_queue:
                raise APIError(f"this request needs {k} sequences (prompts x n), more than --parallel "
                               f"{self.max_batch} + --max-queue {self.max_queue} can ever hold", param="n")
            if self.active + k - self.max_batch > self.max_queue:
                raise APIError(f"too many requests waiting ({self.waiting} sequences queued, at most "
                               f"{self.max_queue}); retry later", status=503, type_="unavailable_error",
                               code="queue_full", headers={"Retry-After": "1"})
        self.active += k

    def begin_drain(self) -> None:
        """Stop accepting; what is in flight may finish until the deadline (signal-safe: only
        sets fields)."""
        self.closing = True
        if self.drain_deadline is None:
            self.drain_deadline = time.monotonic() + self.shutdown_timeout

    def drained(self) -> bool:
        """While draining: True once nothing is in flight; past the deadline, cancel what is
        left (it ends at the next step) and give it a few seconds to answer its clients."""
        if self.active == 0:
            return True
        now = time.monotonic()
        if now >= self.drain_deadline:
            if self.inflight:
                log.warning("ignis serve: %d sequences still running after %.0f s: cancelled",
                            len(self.inflight), self.shutdown_timeout)
            self.cancel_all()
            return now >= self.drain_deadline + 5.0
        return False

    async def startup(self) -> None:
        try:
            model = await asyncio.to_thread(self.load)
            self.model = model
            self.n_real_vocab = _real_vocab(model)
            if self.model_name is None:
                self.model_name = os.path.splitext(os.path.basename(model.path))[0]
            self.scheduler = model.scheduler(max_batch=self.max_batch,
                                             step_tokens=max(self.step_tokens, self.max_batch))
            self.ready = True
            log.info("ignis serve: model %s loaded from %s (n_ctx %d, --parallel %d), ready", self.model_name,
                     model.path, model.n_ctx, self.max_batch)
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


_TYPE_UNUSED = 5        # tokenizer.ggml.token_type of a padding entry


def _real_vocab(model) -> int:
    """The ids the tokenizer really has: a converted file may pad its vocabulary to the
    embedding's rows with unused-type tokens at the end (Qwen's [PAD151665]...)."""
    tokens = getattr(model.tokenizer, "n_vocab", model.n_vocab)
    n = min(model.n_vocab, tokens)
    types = model.gguf.metadata.get("tokenizer.ggml.token_type") if getattr(model, "gguf", None) else None
    if types is not None and len(types) >= n:
        while n > 0 and int(types[n - 1]) == _TYPE_UNUSED:
            n -= 1
    return n


def _shutting_down() -> APIError:
    return APIError("the server is shutting down", status=503, type_="unavailable_error",
                    code="shutting_down", headers={"Retry-After": "5"})


class _Sink:
    """Receives (tag, piece) from the engine thread; hands them to the event loop."""

    def __init__(self, loop):
        self.loop = loop
        self.queue = asyncio.Queue()

    def put(self, item) -> None:
        self.put_many([item])

    def put_many(self, items: list) -> None:
        """A step's items in one event-loop wake-up (the scheduler hands them over per step)."""
        try:
            self.loop.call_soon_threadsafe(self._enqueue, items)
        except RuntimeError:              # the loop is closed: nobody is listening any more
            pass

    def _enqueue(self, items: list) -> None:
        for item in items:
            self.queue.put_nowait(item)


class _Run:
    """One request's handles as seen from the event loop: pieces as they come, metrics,
    and cleanup (cancel what is unfinished, release the queue slots reserved for it)."""

    def __init__(self, state: ServerState, handles: list, sink: _Sink, n_prompt: int, scope: dict):
        self.state, self.handles, self.sink = state, handles, sink
        self.n_prompt = n_prompt
        self.scope = scope                     # the HTTP request's: the access log reads the usage
        self.watcher = None
        self.ended = set()                     # tags whose end has come
        self.t0 = time.perf_counter()
        self.last = [None] * len(handles)      # time of the latest piece
        self.speculative = False               # drafts verified: the usage says how many
        self.counted = [0] * len(handles)      # tokens already timed
        self.closed = False
        state.inflight.update(handles)
        state.metrics.prompt_tokens.inc(n_prompt)

    def watch(self, request: HTTPRequest) -> None:
        """Cancel the run as soon as its client disconnects, tokens flowing or not: a task
        waits on the connection beside the events."""
        async def watch():
            try:
                while (await request.receive())["type"] != "http.disconnect":
                    pass
            except Exception:            # noqa: BLE001 - a connection torn down under us: gone too
                pass
            for h in self.handles:
                h.cancel()                     # the scheduler frees the sequences at its next step
            self.sink.queue.put_nowait(_GONE)
        self.watcher = asyncio.create_task(watch())

    async def next_events(self) -> list:
        """The next (tag, piece) events (at least one; all already queued); ClientGone once
        the client has disconnected."""
        q = self.sink.queue
        events = [await q.get()]
        while True:
            try:
                events.append(q.get_nowait())
            except asyncio.QueueEmpty:
                break
        if _GONE in events:
            raise ClientGone()
        now = time.perf_counter()
        kept = []
        for tag, piece in events:
            if tag in self.ended:
                continue             # a second end, or a piece after the end: each choice ends once
            kept.append((tag, piece))
            if piece is END_OF_STREAM:
                self.ended.add(tag)
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
        return kept

    @property
    def left(self) -> int:
        return len(self.handles) - len(self.ended)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.watcher is not None:
            self.watcher.cancel()
        metrics = self.state.metrics
        for h in self.handles:
            if not h.done:
                h.cancel()
                metrics.finished.labels("cancelled").inc()
            else:
                metrics.finished.labels("error" if h.error is not None else h.result.finish_reason).inc()
            metrics.generated_tokens.inc(len(h.result.tokens))
            metrics.drafted_tokens.inc(h.result.drafted)
            metrics.accepted_tokens.inc(h.result.accepted)
            self.state.inflight.discard(h)
        self.state.active -= len(self.handles)
        self.scope["ignis.tokens"] = (self.n_prompt, self.completion_tokens)

    @property
    def completion_tokens(self) -> int:
        return sum(len(h.result.tokens) for h in self.handles)

    def usage(self) -> dict:
        """OpenAI's usage; with speculative decoding also the draft counts: ignis' drafted_tokens
        and accepted_tokens, and OpenAI's completion_tokens_details (the accepted and rejected
        "prediction" tokens of its predicted outputs)."""
        use = protocol.usage(self.n_prompt, self.completion_tokens)
        if self.speculative:
            drafted = sum(h.result.drafted for h in self.handles)
            accepted = sum(h.result.accepted for h in self.handles)
            use.update(drafted_tokens=drafted, accepted_tokens=accepted,
                       completion_tokens_details={"accepted_prediction_tokens": accepted,
                                                  "rejected_prediction_tokens": drafted - accepted})
        return use

    async def finish(self) -> None:
        """Wait for every choice of a non-streamed request; raise the first one's cut-off."""
        try:
            while self.left:
                await self.next_events()
        finally:
            self.close()
        for i in range(len(self.handles)):
            if (err := self.cut_off(i)) is not None:
                raise err

    def cut_off(self, i: int) -> APIError | None:
        """Choice i's error if it did not finish (cancelled by shutdown, or failed)."""
        h = self.handles[i]
        if isinstance(h.error, KVCacheFullError):     # an overload, not a fault: worth a retry
            return APIError(f"the KV cache is full (every block held by other sequences): retry later, or serve "
                            f"with a larger -c ({' '.join(str(h.error).split())})", status=503,
                            type_="unavailable_error", code="kv_cache_full", headers={"Retry-After": "1"})
        if h.error is not None:
            return APIError(f"generation failed: {' '.join(str(h.error).split())}", status=503,
                            type_="server_error", code="engine_error", headers={"Retry-After": "1"})
        if h.result.finish_reason == "cancelled":
            return APIError(f"the server shut down before the request finished (cut off after "
                            f"{len(h.result.tokens)} tokens)", status=503, type_="unavailable_error",
                            code="shutting_down", headers={"Retry-After": "5"})
        return None


_GONE = object()      # put in a run's queue when its client disconnects


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
                    raise _shutting_down()
                if ready and not state.ready:
                    raise APIError("the model is loading", status=503, type_="unavailable_error",
                                   headers={"Retry-After": "1"})
                response = await func(request, state)
            except APIError as exc:
                response = _error(exc)
            except ClientGone:
                response = Response(status_code=499)
            state.metrics.requests.labels(name, str(response.status_code)).inc()
            return response
        return handler
    return wrap


async def _json(request: HTTPRequest):
    return await read_json(request)


async def _prep(state: ServerState, func, *args):
    """Run tokenizer / template work off the event loop; ignis errors become 400s."""
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(state.prep, functools.partial(func, *args))
    except IgnisError as exc:
        raise APIError(str(exc), param=getattr(exc, "param", None)) from None


def _start(state: ServerState, requests, n_sequences: int, n_prompt: int, request: HTTPRequest) -> "_Run":
    """Count the request's sequences in flight, submit them, and watch the client: its _Run."""
    state.reserve(n_sequences)          # counted at once: no await between the check and the count
    sink = _Sink(asyncio.get_running_loop())
    try:
        handles = _submit(state, requests, sink)
    except IgnisError as exc:
        state.active -= n_sequences
        raise APIError(str(exc)) from None
    except BaseException:
        state.active -= n_sequences
        raise
    run = _Run(state, handles, sink, n_prompt, request.scope)
    run.speculative = any(getattr(r, "speculative", None) for r in requests)
    run.watch(request)
    return run


def _submit(state: ServerState, requests, sink):
    """Submit each prompt's Request (n completions each); tag i*n + j goes to completion j of
    prompt i, the request's choice index. The one place the server calls the scheduler."""
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
    bias = _check_bias(state, req.logit_bias)
    requests = []
    for i, prompt in enumerate(prompts):
        where = "messages" if kind == "chat" else "prompt" if len(prompts) == 1 else f"prompt[{i}]"
        if not isinstance(prompt, str):
            _check_vocab(state, prompt, where)
        requests.append(await _prep(state, functools.partial(
            model.request, prompt, want, req.temperature, req.top_k, req.top_p, req.min_p, req.repeat_penalty,
            req.presence_penalty, req.frequency_penalty, req.seed, req.stop, req.ignore_eos, n=req.n,
            logprobs=req.logprobs, constraint=constraint, name=where, logit_bias=bias,
            speculative=state.spec if req.speculative == "default" else req.speculative)))
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
    run = _start(state, requests, len(echoes), n_prompt, request)
    handles = run.handles
    rid = protocol.new_id(kind)
    if req.stream:
        return StreamingResponse(_stream(run, kind, rid, state.model_name, req, echoes,
                                         toolchat.parsers(plan, len(handles))),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    await run.finish()
    texts = [echo + h.result.text for echo, h in zip(echoes, handles)]
    use = run.usage()
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


def _check_vocab(state: ServerState, ids, where: str) -> None:
    """Token ids the tokenizer does not have (past its real vocabulary) are a 400."""
    if isinstance(ids, list):
        bad = [t for t in ids if isinstance(t, int) and not 0 <= t < state.n_real_vocab]
        if bad:
            raise APIError(f"{where}: token id {bad[0]} is not in the vocabulary (ids are 0 to "
                           f"{state.n_real_vocab - 1})", param="prompt" if where.startswith("prompt") else "tokens")


def _check_bias(state: ServerState, bias: dict | None) -> dict | None:
    """logit_bias with its ids checked against the tokenizer's real vocabulary (a 400 naming
    logit_bias; the model's padded logits rows past it hold no token)."""
    bad = sorted(t for t in bias or () if t >= state.n_real_vocab)
    if bad:
        raise APIError(f"logit_bias: token id {bad[0]} is not in the vocabulary (ids are 0 to "
                       f"{state.n_real_vocab - 1})", param="logit_bias")
    return dict(bias) if bias else None


# U+0085, U+2028 and U+2029 stay raw in JSON, but readers that split an SSE stream with
# str.splitlines (httpx's iter_lines) break a line there: escape them as JSON allows
_SSE_LINE_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def _sse(body) -> str:
    text = json.dumps(body, ensure_ascii=False, separators=(',', ':')).translate(_SSE_LINE_BREAKS)
    return f"data: {text}\n\n"


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
            try:
                events = await run.next_events()
            except ClientGone:
                return                 # nobody to write to
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
                if (err := run.cut_off(i)) is not None:
                    yield _sse(err.body())      # the last event: no [DONE], the client sees the cut
                    return
                reason = h.result.finish_reason
                if parsers is not None:
                    for delta in parsers[i].finish():
                        yield out([(i, delta, None, False, None)])
                    reason = parsers[i].finish_reason(reason)
                yield out([(i, None if kind == "chat" else "", reason, False, new_logprobs(i, final=True))])
        if req.include_usage:
            yield out([], run.usage())
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


@_endpoint("embeddings")
async def embeddings(request, state):
    """OpenAI's /v1/embeddings (ignis.serve.embeddings): every input a rows="embed" request
    in the scheduler, prefilled beside the generations; unit vectors of the model's width."""
    model = state.model
    req = embeddings_api.parse(await _json(request), model.config.width)
    pooling = await _prep(state, check_pooling, state.pooling, model.gguf.metadata)
    requests = []
    for i, x in enumerate(req.inputs):
        name = "input" if len(req.inputs) == 1 else f"input[{i}]"
        requests.append(await _prep(state, embed_request, model, x, pooling, name))
    n_prompt = sum(len(r.ids) for r in requests)
    run = _start(state, requests, len(requests), n_prompt, request)
    handles = run.handles
    await run.finish()
    vectors = l2_normalize(np.stack([h.embedding for h in handles]))
    return JSONResponse(embeddings_api.response(vectors, req.encoding_format, state.model_name, n_prompt))


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
    _check_vocab(state, tokens, "tokens")
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


async def _not_found(request, exc):
    """404 / 405 as OpenAI's error JSON (what clients parse), not Starlette's text/plain."""
    status = getattr(exc, "status_code", 404)
    if status == 405:
        err = APIError(f"{request.method} is not allowed on {request.url.path}", status=405,
                       code="method_not_allowed", headers=dict(getattr(exc, "headers", None) or {}))
    else:
        err = APIError(f"no such endpoint: {request.method} {request.url.path}", status=404, code="not_found")
    return _error(err)


def create_app(model, *, max_batch: int = 8, step_tokens: int = 256, api_key: str | None = None,
               max_queue: int | None = None, model_name: str | None = None, pooling: str | None = None,
               shutdown_timeout: float = 10.0, access_log: bool = True, spec: str | None = None) -> Starlette:
    """The Starlette app. model: an ignis Model, or a function returning one (called in a
    thread at startup; /health answers 503 until it returns). pooling: /v1/embeddings'
    (mean, last, cls; None: the file's pooling_type, else mean)."""
    load = model if callable(model) and not hasattr(model, "scheduler") else (lambda: model)
    state = ServerState(load, max_batch=max_batch, step_tokens=step_tokens, api_key=api_key,
                        max_queue=max_queue, model_name=model_name, pooling=pooling,
                        shutdown_timeout=shutdown_timeout, spec=spec)

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
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/embeddings", embeddings, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/models", models, methods=["GET"]),
        Route("/tokenize", tokenize, methods=["POST"]),
        Route("/detokenize", detokenize, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/v1/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    middleware = [Middleware(AccessLog)] if access_log else []
    app = Starlette(routes=routes, lifespan=lifespan, middleware=middleware,
                    exception_handlers={404: _not_found, 405: _not_found})
    app.state.ignis = state
    return app


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before the model loads: a busy port is one line at once."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise IgnisError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        hint = " (another server is using it: stop it or pick another --port)" if exc.errno == 98 else ""
        raise IgnisError(f"cannot listen on {host}:{port}: {exc.strerror or exc}{hint}") from None
    return sock


def _log_to_stderr(quiet: bool) -> None:
    """ignis.serve's lines (model loaded, access log) on stderr, as uvicorn's own."""
    logger = logging.getLogger("ignis.serve")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(logging.INFO)
    logging.getLogger("ignis.serve.access").setLevel(logging.WARNING if quiet else logging.INFO)


def serve(model_path: str, *, host: str = "127.0.0.1", port: int = 8080, n_ctx: int | None = None,
          threads: int | None = None, max_batch: int = 8, api_key: str | None = None,
          max_queue: int | None = None, log_level: str = "info", pooling: str | None = None,
          shutdown_timeout: float = 10.0, quiet: bool = False, spec: str | None = None, draft_model=None) -> int:
    """Run the server until SIGINT / SIGTERM. The first signal drains: new requests get a 503,
    those in flight have shutdown_timeout seconds to finish, then the rest are cancelled
    (their clients get an error) and the server exits 0. A second signal skips the wait."""
    import uvicorn

    import ignis

    sock = _bind(host, port)
    _log_to_stderr(quiet)
    app = create_app(lambda: ignis.load(model_path, n_ctx=n_ctx, threads=threads, draft_model=draft_model),
                     max_batch=max_batch,
                     api_key=api_key, max_queue=max_queue, pooling=pooling, shutdown_timeout=shutdown_timeout,
                     access_log=not quiet, spec=spec)
    state: ServerState = app.state.ignis

    class _Server(uvicorn.Server):
        def handle_exit(self, sig, frame):
            if state.ready and not state.closing:
                state.begin_drain()       # on_tick ends the server once drained
                log.info("ignis serve: draining (up to %.0f s; signal again to stop now)", state.shutdown_timeout)
            else:
                state.cancel_all()        # a second signal, or nothing loaded: stop now
                super().handle_exit(sig, frame)
            # a requested stop exits 0 (uvicorn would re-raise the signal after shutting down)
            self._captured_signals = [s for s in self._captured_signals if s not in (signal.SIGTERM, signal.SIGINT)]

        async def on_tick(self, counter):
            if state.drain_deadline is not None and not self.should_exit and state.drained():
                self.should_exit = True
            return await super().on_tick(counter)

    # h11 whatever else is installed (httptools comes with ray[serve] and answers some malformed
    # requests h11 takes, with a plain-text 400): one HTTP parser, one behaviour
    config = uvicorn.Config(app, log_level=log_level, lifespan="on", timeout_graceful_shutdown=5,
                            access_log=False, http="h11")
    server = _Server(config)
    state.server = server
    # uvicorn puts back the handlers it found when it stops: a signal then (a second SIGTERM
    # while the process exits) is ignored instead of killing it with a non-zero status
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    with sock:
        server.run(sockets=[sock])
    if state.load_error is not None:
        raise IgnisError(state.load_error)
    if not server.started:
        raise IgnisError(f"could not serve on {host}:{port} (see the log above)")
    return 0
