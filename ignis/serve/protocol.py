"""OpenAI request parsing and response shapes for `ignis serve`.

A request body is checked field by field (a bad one is an `APIError` naming it, which the
app turns into a 400 with OpenAI's error JSON). Each endpoint has one list of the fields it
honours, one of OpenAI's fields that do not change the answer (accepted, ignored) and one of
OpenAI's fields it does not support (a 400 naming the field); other fields are not OpenAI's
and are ignored. Sampling defaults are OpenAI's (temperature 1, top_p 1, no top-k or min-p
cut) unless the request sets them; top_k, min_p, repeat_penalty and ignore_eos are accepted
as extensions. logit_bias is checked as OpenAI does ({"token id": bias in [-100, 100]}); the
app checks its ids against the tokenizer's real vocabulary.
"""
from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass, field

from ignis.errors import IgnisError


class APIError(Exception):
    """An error answered with OpenAI's error JSON: {"error": {message, type, param, code}}."""

    def __init__(self, message: str, status: int = 400, param: str | None = None,
                 type_: str = "invalid_request_error", code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.message = " ".join(str(message).split())       # one line
        self.status = status
        self.param = param
        self.type = type_
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def _describe(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _number(body: dict, name: str, default, lo=None, hi=None):
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise APIError(f"{name} must be a finite number, got {_describe(value)}", param=name)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise APIError(f"{name} must be in [{lo}, {hi}], got {value}", param=name)
    return float(value)


def _integer(body: dict, name: str, default, lo=None, hi=None):
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise APIError(f"{name} must be an integer, got {_describe(value)}", param=name)
    if lo is not None and value < lo:
        raise APIError(f"{name} must be at least {lo}, got {value}", param=name)
    if hi is not None and value > hi:
        raise APIError(f"{name} must be at most {hi}, got {value}", param=name)
    return value


def _boolean(body: dict, name: str, default: bool) -> bool:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise APIError(f"{name} must be a boolean, got {_describe(value)}", param=name)
    return value


MAX_PROMPTS = 64          # prompts in one completions request (each runs as its own sequence)
DEFAULT_MAX_TOKENS = {"completion": 16, "chat": None}     # OpenAI's; None: up to the context

# llama.cpp server's extensions both endpoints honour
_EXTENSIONS = {"top_k", "min_p", "repeat_penalty", "ignore_eos", "json_schema", "regex", "grammar", "speculative"}
HONOURED = {
    "chat": frozenset({"messages", "model", "frequency_penalty", "logit_bias", "logprobs", "top_logprobs",
                       "max_tokens", "max_completion_tokens", "n", "presence_penalty", "response_format", "seed",
                       "stop", "stream", "stream_options", "temperature", "top_p", "tools", "tool_choice",
                       "parallel_tool_calls", *_EXTENSIONS}),
    "completion": frozenset({"model", "prompt", "echo", "frequency_penalty", "logit_bias", "logprobs",
                             "max_tokens", "n", "presence_penalty", "seed", "stop", "stream", "stream_options",
                             "temperature", "top_p", "response_format", *_EXTENSIONS}),
}
# OpenAI's fields that do not change the answer: accepted and ignored
IGNORED = {
    "chat": frozenset({"user", "metadata", "store", "service_tier", "prediction", "prompt_cache_key",
                       "safety_identifier"}),
    "completion": frozenset({"user"}),
}
# OpenAI's fields that would change the answer and are not supported: a 400 naming the field
REFUSED = {
    "chat": frozenset({"audio", "modalities", "reasoning_effort",
                       "web_search_options", "functions", "function_call", "verbosity"}),
    "completion": frozenset({"best_of", "suffix"}),
}
ROLES = ("system", "developer", "user", "assistant", "tool")     # developer: OpenAI's newer name for system


def _neutral(name: str, value, body: dict) -> bool:
    """A refused field given a value that asks for nothing beyond the default."""
    if value is None:
        return True
    if name in ("functions", "suffix"):     # empty: nothing asked for
        return value in ({}, [], "")
    if name == "modalities":
        return value == ["text"]
    if name == "best_of":        # best_of == n (1 by default) is what every request does
        return value == (body.get("n") if body.get("n") is not None else 1)
    return False


def refuse_unsupported(body: dict, kind: str) -> None:
    """A 400 naming the first field the endpoint does not support (given a value that counts)."""
    for name in sorted(REFUSED[kind] & body.keys()):
        if not _neutral(name, body[name], body):
            where = "/v1/chat/completions" if kind == "chat" else "/v1/completions"
            raise APIError(f"{name} is not supported by this server on {where}", param=name,
                           code="unsupported_parameter")


@dataclass
class Request:
    """One checked request, before its prompt is tokenized."""
    kind: str                        # "chat" or "completion"
    prompts: list = field(default_factory=list)      # completion: each a str or a list of token ids
    messages: list = field(default_factory=list)     # chat: [{"role", "content": str}]
    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    logit_bias: dict | None = None   # {token id: bias in [-100, 100]}; None or {}: none
    stop: list = field(default_factory=list)
    n: int = 1
    stream: bool = False
    include_usage: bool = False
    ignore_eos: bool = False
    speculative: str | None = "default"   # None (off), "ngram", "draft", or the server's --spec
    echo: bool = False
    model: str | None = None
    logprobs: int | None = None      # None: none; N: each token's log-probability and the top N
    # structured output (at most one): response_format's schema, or llama.cpp server's fields
    json_schema: object = None
    regex: str | None = None
    grammar: str | None = None
    tools: object = None             # chat: a ToolRequest (tools, tool_choice, parallel_tool_calls) or None


def _stop(body: dict) -> list:
    stop = body.get("stop")
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop] if stop else []
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise APIError(f"stop must be a string or a list of strings, got {_describe(stop)}", param="stop")
    return [s for s in stop if s]


LOGIT_BIAS_LIMIT = 100.0      # OpenAI's range: -100 bans a token, +100 forces it


def _logit_bias(body: dict) -> dict | None:
    """OpenAI's logit_bias: an object mapping token ids (decimal strings) to numbers in
    [-100, 100]; {token id: float}, or None when it asks for nothing. Whether the ids are
    in the vocabulary is the app's check (it knows the tokenizer)."""
    value = body.get("logit_bias")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise APIError(f"logit_bias must be an object mapping token ids to biases, got {_describe(value)}",
                       param="logit_bias")
    out = {}
    for key, bias in value.items():
        if not (isinstance(key, str) and key.isascii() and key.isdigit() and len(key) <= 12):
            raise APIError(f"logit_bias keys must be token ids written as decimal strings, got {_describe(key)}",
                           param="logit_bias")
        token = int(key)
        if token in out:
            raise APIError(f"logit_bias names token id {token} twice", param="logit_bias")
        if isinstance(bias, bool) or not isinstance(bias, (int, float)) or not math.isfinite(bias):
            raise APIError(f"logit_bias[{key!r}] must be a finite number, got {_describe(bias)}", param="logit_bias")
        if not -LOGIT_BIAS_LIMIT <= bias <= LOGIT_BIAS_LIMIT:
            raise APIError(f"logit_bias[{key!r}] must be in [-100, 100], got {bias}", param="logit_bias")
        out[token] = float(bias)
    return out or None


def _content(i: int, message: dict) -> str:
    """A message's content as text: a str, null, or a list of {"type": "text", "text"} parts."""
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for j, part in enumerate(content):
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                parts.append(part["text"])
            else:
                raise APIError(f"messages[{i}].content[{j}]: only text parts are supported, got "
                               f"{_describe(part)}", param="messages")
        return "".join(parts)
    raise APIError(f"messages[{i}].content must be a string or a list of text parts, got {_describe(content)}",
                   param="messages")


def _messages(body: dict) -> list:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise APIError("messages must be a non-empty list of {role, content} objects"
                       + ("" if "messages" in body else " (missing)"), param="messages")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise APIError(f"messages[{i}] must be an object with role and content, got {_describe(m)}",
                           param="messages")
        role = m.get("role")
        if role not in ROLES:
            raise APIError(f"messages[{i}].role must be one of {', '.join(ROLES)}, got {_describe(role)}",
                           param="messages")
        out.append({"role": "system" if role == "developer" else role, "content": _content(i, m),
                    **_tool_fields(i, m)})
    return out


def _tool_fields(i: int, message: dict) -> dict:
    """An assistant's tool_calls, a tool message's tool_call_id (ignis.runtime.tools)."""
    from ignis.runtime.tools import message_tool_fields
    try:
        return message_tool_fields(i, message)
    except IgnisError as exc:
        raise APIError(str(exc), param="messages") from None


def _tools(body: dict, r: Request) -> None:
    """tools, tool_choice and parallel_tool_calls (chat)."""
    from ignis.runtime.tools import check_tool_request
    try:
        r.tools = check_tool_request(body.get("tools"), body.get("tool_choice"), body.get("parallel_tool_calls"))
    except IgnisError as exc:
        raise APIError(str(exc), param=getattr(exc, "param", "tools")) from None


def _is_ids(x) -> bool:
    return isinstance(x, list) and bool(x) and all(isinstance(t, int) and not isinstance(t, bool) for t in x)


def _prompts(body: dict) -> list:
    """OpenAI's four prompt forms: a string, a list of token ids, a list of strings, a list of
    token-id lists (a batch: choice i*n + j is completion j of prompt i)."""
    prompt = body.get("prompt")
    if isinstance(prompt, str) or _is_ids(prompt):
        return [prompt]
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) or _is_ids(p) for p in prompt):
        if len(prompt) > MAX_PROMPTS:
            raise APIError(f"prompt: at most {MAX_PROMPTS} prompts per request, got {len(prompt)}", param="prompt")
        return list(prompt)
    raise APIError("prompt must be a string, a non-empty list of token ids, or a non-empty list of those"
                   + ("" if "prompt" in body else " (missing)"), param="prompt")


def parse(body, kind: str, max_n: int) -> Request:
    """Check a chat ("chat") or completion ("completion") request body."""
    if not isinstance(body, dict):
        raise APIError(f"the request body must be a JSON object, got {type(body).__name__}")
    refuse_unsupported(body, kind)
    r = Request(kind)
    if kind == "chat":
        r.messages = _messages(body)
    else:
        r.prompts = _prompts(body)
        r.echo = _boolean(body, "echo", False)
    model = body.get("model")
    r.model = model if isinstance(model, str) else None
    r.max_tokens = _integer(body, "max_tokens", DEFAULT_MAX_TOKENS[kind], 0)
    if kind == "chat":
        r.max_tokens = _integer(body, "max_completion_tokens", r.max_tokens, 0)
    r.temperature = _number(body, "temperature", 1.0, 0.0, 2.0)
    r.top_p = _number(body, "top_p", 1.0, 0.0, 1.0)
    if r.top_p == 0.0:
        r.top_p, r.temperature = 1.0, 0.0        # only the most likely token is left: greedy
    r.top_k = _integer(body, "top_k", 0, 0)
    r.min_p = _number(body, "min_p", 0.0, 0.0, 1.0)
    r.repeat_penalty = _number(body, "repeat_penalty", 1.0, 0.0)
    if r.repeat_penalty == 0.0:
        raise APIError("repeat_penalty must be positive, got 0", param="repeat_penalty")
    r.presence_penalty = _number(body, "presence_penalty", 0.0, -2.0, 2.0)
    r.frequency_penalty = _number(body, "frequency_penalty", 0.0, -2.0, 2.0)
    r.seed = _integer(body, "seed", None)
    if r.seed is not None and r.seed < 0:
        r.seed &= (1 << 64) - 1          # OpenAI clients may send negative seeds: use their bits
    r.logit_bias = _logit_bias(body)
    r.stop = _stop(body)
    r.n = _integer(body, "n", 1, 1, max_n)
    r.stream = _boolean(body, "stream", False)
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise APIError(f"stream_options must be an object, got {_describe(options)}", param="stream_options")
        r.include_usage = _boolean(options, "include_usage", False)
    r.ignore_eos = _boolean(body, "ignore_eos", False)
    if "speculative" in body:        # an extension: null turns the server's --spec off for this request
        spec = body["speculative"]
        if spec is not None and spec not in ("ngram", "draft"):
            raise APIError(f"speculative must be null, \"ngram\" or \"draft\", got {_describe(spec)}",
                           param="speculative")
        r.speculative = spec
    if kind == "chat":
        if _boolean(body, "logprobs", False):
            r.logprobs = _integer(body, "top_logprobs", 0, 0, 20)
        elif body.get("top_logprobs") is not None:
            raise APIError("top_logprobs needs logprobs: true", param="top_logprobs")
    else:
        r.logprobs = _integer(body, "logprobs", None, 0, 20)
    _structured(body, r)
    if kind == "chat":
        _tools(body, r)
    return r


def _structured(body: dict, r: Request) -> None:
    """response_format ({"type": "text" | "json_object" | "json_schema", ...}), or llama.cpp
    server's json_schema / grammar fields, or regex: at most one."""
    from ignis.runtime.constraint import response_format_schema
    try:
        schema = response_format_schema(body.get("response_format"))
    except IgnisError as exc:
        raise APIError(str(exc), param="response_format") from None
    given = [name for name in ("json_schema", "regex", "grammar") if body.get(name) is not None]
    if schema is not None:
        given.insert(0, "response_format")
    if len(given) > 1:
        raise APIError(f"give at most one of response_format, json_schema, regex and grammar, got "
                       f"{given[0]} and {given[1]}", param=given[1])
    for name in ("regex", "grammar"):
        value = body.get(name)
        if value is not None and not isinstance(value, str):
            raise APIError(f"{name} must be a string, got {_describe(value)}", param=name)
    r.json_schema = schema if schema is not None else body.get("json_schema")
    r.regex, r.grammar = body.get("regex"), body.get("grammar")


def _piece(tokenizer, token: int) -> tuple:
    raw = tokenizer.token_to_piece(token)
    return raw.decode("utf-8", errors="replace"), list(raw)


def logprobs(kind: str, tokenizer, tokens: list, entries: list, offset: int = 0):
    """The logprobs object of a choice (or of a chunk): tokens[i] has entries[i] =
    (log-probability, [(id, log-probability)] of the top alternatives)."""
    if kind == "chat":
        content = []
        for token, (lp, top) in zip(tokens, entries):
            text, raw = _piece(tokenizer, token)
            alts = []
            for i, alp in top:
                t, b = _piece(tokenizer, i)
                alts.append({"token": t, "logprob": alp, "bytes": b})
            content.append({"token": text, "logprob": lp, "bytes": raw, "top_logprobs": alts})
        return {"content": content, "refusal": None}
    out = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
    for token, (lp, top) in zip(tokens, entries):
        text, _ = _piece(tokenizer, token)
        out["tokens"].append(text)
        out["token_logprobs"].append(lp)
        alts = {}
        for i, alp in top:
            alts.setdefault(_piece(tokenizer, i)[0], alp)
        out["top_logprobs"].append(alts)
        out["text_offset"].append(offset)
        offset += len(text)
    return out


# -- responses -------------------------------------------------------------------------------

def new_id(kind: str) -> str:
    return ("chatcmpl-" if kind == "chat" else "cmpl-") + uuid.uuid4().hex[:24]


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def finish_reason(reason: str) -> str:
    """OpenAI's finish reason; a cut-off ("cancelled", "error") is never one (the app answers
    those with an error)."""
    if reason in ("cancelled", "error"):
        raise ValueError(f"no OpenAI finish reason for {reason!r}")
    return reason


def response(kind: str, rid: str, model: str, texts: list, reasons: list, use: dict,
             lps: list | None = None, messages: list | None = None) -> dict:
    """messages: chat messages to answer with instead of texts (a reply with tool calls)."""
    created = int(time.time())
    lps = lps or [None] * len(texts)
    if kind == "chat":
        messages = messages or [{"role": "assistant", "content": t} for t in texts]
        choices = [{"index": i, "message": m, "logprobs": lp, "finish_reason": finish_reason(f)}
                   for i, (m, f, lp) in enumerate(zip(messages, reasons, lps))]
        return {"id": rid, "object": "chat.completion", "created": created, "model": model,
                "choices": choices, "usage": use}
    choices = [{"index": i, "text": t, "logprobs": lp, "finish_reason": finish_reason(f)}
               for i, (t, f, lp) in enumerate(zip(texts, reasons, lps))]
    return {"id": rid, "object": "text_completion", "created": created, "model": model,
            "choices": choices, "usage": use}


def chunk(kind: str, rid: str, model: str, created: int, choices: list, include_usage: bool,
          use: dict | None = None) -> dict:
    """One streamed chunk; choices are (index, text or None, finish_reason or None, first,
    logprobs object or None); a chat choice's text may be a delta dict (tool calls)."""
    out = []
    for index, text, reason, first, lp in choices:
        if kind == "chat":
            delta = {}
            if first:
                delta["role"] = "assistant"
            if isinstance(text, dict):
                delta.update(text)
            elif text is not None:
                delta["content"] = text
            out.append({"index": index, "delta": delta, "logprobs": lp,
                        "finish_reason": finish_reason(reason) if reason else None})
        else:
            out.append({"index": index, "text": text or "", "logprobs": lp,
                        "finish_reason": finish_reason(reason) if reason else None})
    body = {"id": rid, "object": "chat.completion.chunk" if kind == "chat" else "text_completion",
            "created": created, "model": model, "choices": out}
    if include_usage:
        body["usage"] = use
    return body
