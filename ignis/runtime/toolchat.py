"""Tool calls wired to a Model: the prompt and the constraint of a chat request with tools
(for Model.chat and for the server), and Model.chat's reply as OpenAI's message."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from ignis.errors import ArgumentError
from ignis.runtime.toolparse import CallParser
from ignis.runtime.tools import ToolError, ToolRequest, bare_calls, check_compiles, check_tool_request, grammar, render


@dataclass(frozen=True)
class ToolPlan:
    prompt: str                    # the rendered conversation, the tools in it when calls are allowed
    grammar: str | None            # the Lark grammar the reply must match (None: unconstrained)
    request: ToolRequest | None
    bare: bool = False             # the reply may open with a call without markers

    def parser(self) -> CallParser:
        return CallParser(self.bare)

    @property
    def parses(self) -> bool:
        """The reply may hold calls (it is parsed into message.tool_calls)."""
        return self.request is not None and self.request.calls_allowed


def prepare(model, messages, request: ToolRequest | None, text_schema=None) -> ToolPlan:
    """The prompt and the grammar of a chat request (request None: no tools, no constraint
    of its own; text_schema: a response_format schema the text answer must match)."""
    prompt = render(model.chat_template(), messages, True, request)
    tok = model.tokenizer
    lark = grammar(request, tok.special_tokens, text_schema, getattr(tok, "text_special_ids", frozenset()))
    return ToolPlan(prompt, lark, request, bare_calls(request, text_schema))


def compile_plan(model, plan: ToolPlan):
    """The compiled constraint of a plan (None if it has no grammar); a tool schema that
    llguidance cannot use is a ToolError naming the tools."""
    return check_compiles(lambda lark: model.constraint(grammar=lark), plan.request, plan.grammar)


def chat_with_tools(model, messages, tools, tool_choice, parallel_tool_calls, *, max_tokens, stream, **settings):
    """Model.chat with tools: the reply as OpenAI's assistant message {"role", "content",
    "tool_calls"?}, or with stream=True an iterator of OpenAI's deltas ({"content": piece}
    or {"tool_calls": [...]} keyed by index)."""
    request = check_tool_request(tools, tool_choice, parallel_tool_calls)
    for key in ("regex", "grammar"):
        if settings.get(key) is not None and request is not None and request.choice != "none":
            raise ArgumentError(f"tools cannot be combined with {key} (give json_schema or response_format "
                                "to shape the text answer)")
    text_schema = settings.pop("json_schema", None)
    plan = prepare(model, messages, request, text_schema)
    compile_plan(model, plan)              # a bad tool schema fails here, naming the tools
    if plan.grammar is None and text_schema is not None:
        settings["json_schema"] = text_schema
    out = model.generate(plan.prompt, max_tokens=max_tokens, stream=stream, grammar=plan.grammar, **settings)
    if stream:
        return _deltas(out, plan)
    if not plan.parses:
        return {"role": "assistant", "content": out}
    parser = plan.parser()
    parser.feed(out)
    parser.finish()
    return parser.message()


def _deltas(pieces, plan: ToolPlan) -> Iterator[dict]:
    if not plan.parses:
        for piece in pieces:
            yield {"content": piece}
        return
    parser = plan.parser()
    for piece in pieces:
        yield from parser.feed(piece)
    yield from parser.finish()


# --- for the server ---------------------------------------------------------------------

def request_constraint(model, plan: ToolPlan | None, json_schema=None, regex=None, grammar=None):
    """The compiled constraint of a chat request: its tool grammar (which holds a
    response_format schema as the text answer's shape), else its own structured output."""
    if plan is None or plan.grammar is None:
        return model.constraint(json_schema, regex, grammar)
    for name, value in (("regex", regex), ("grammar", grammar)):
        if value is not None:
            raise ToolError(name, f"tools cannot be combined with {name} (give response_format to shape "
                                  "the text answer)")
    return compile_plan(model, plan)


def parsers(plan: ToolPlan | None, n: int):
    """One CallParser per choice, or None when the replies are plain text."""
    return [plan.parser() for _ in range(n)] if plan is not None and plan.parses else None


def replies(plan: ToolPlan | None, texts: list, reasons: list) -> tuple:
    """(messages or None, finish reasons) of whole replies: calls parsed out when allowed."""
    ps = parsers(plan, len(texts))
    if ps is None:
        return None, reasons
    for p, text in zip(ps, texts):
        p.feed(text)
        p.finish()
    return [p.message() for p in ps], [p.finish_reason(r) for p, r in zip(ps, reasons)]
