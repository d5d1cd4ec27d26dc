"""Tool calls, OpenAI's way: the request's `tools`, `tool_choice` and `parallel_tool_calls`
checked; the conversation rendered with the tools (through the file's chat template when it
renders `tools` itself, as Qwen 2.5's does, else through a generic system prompt); and the
output constrained so that every call is valid.

The call format is the Hermes one Qwen 2.5 is trained on, used for every model:
    <tool_call>\\n{"name": NAME, "arguments": {...}}\\n</tool_call>
one block per call. The constraint is a Lark grammar for llguidance (ignis' existing
`grammar=` road) where each offered function is a `%json` rule: a call never names a tool
that was not offered and never carries arguments that fail its schema. With "auto" the
output is text (which may not contain the marker) or text followed by calls; with
"required" or a named function it is calls only; with "none" it is text without calls.

Parsing the output back into OpenAI's message.tool_calls is ignis.runtime.toolparse."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

from ignis.args import describe
from ignis.errors import ArgumentError, ConstraintError

OPEN, CLOSE = "<tool_call>", "</tool_call>"
RESPONSE_OPEN, RESPONSE_CLOSE = "<tool_response>", "</tool_response>"
CHOICES = ("auto", "none", "required")
_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")      # OpenAI's rule for a function's name (and dots)
# whitespace inside a call's JSON: a call is one line, as the models write it
_CALL_WHITESPACE = r"[\x20]{0,2}"


class ToolError(ArgumentError):
    """A bad tools / tool_choice / parallel_tool_calls / message field; param names the
    request field (for the server's error JSON)."""

    def __init__(self, param: str, message: str):
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class Tool:
    name: str
    description: str | None
    parameters: dict
    spec: dict                   # {"type": "function", "function": {...}}: what templates render


@dataclass(frozen=True)
class ToolRequest:
    """A chat request's tools, checked: choice is "auto", "none", "required" or the name of
    the one function that must be called."""
    tools: tuple
    choice: str
    parallel: bool

    @property
    def calls_allowed(self) -> bool:
        return bool(self.tools) and self.choice != "none"

    def offered(self) -> tuple:
        """The tools a call may name."""
        if self.choice in CHOICES:
            return self.tools
        return tuple(t for t in self.tools if t.name == self.choice)


# --- checking the request ---------------------------------------------------------------

def _check_tool(i: int, item) -> Tool:
    where = f"tools[{i}]"
    if not isinstance(item, dict) or item.get("type", "function") != "function":
        raise ToolError("tools", f"{where} must be {{'type': 'function', 'function': {{...}}}}, got {describe(item)}")
    fn = item.get("function")
    if not isinstance(fn, dict):
        raise ToolError("tools", f"{where}.function must be an object with a name, got {describe(fn)}")
    name = fn.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ToolError("tools", f"{where}.function.name must be 1-64 letters, digits, '_', '-' or '.', "
                                 f"got {describe(name)}")
    description = fn.get("description")
    if description is not None and not isinstance(description, str):
        raise ToolError("tools", f"{where}.function.description must be a string, got {describe(description)}")
    parameters = fn.get("parameters")
    if parameters is None:
        parameters = {"type": "object", "properties": {}}
    if not isinstance(parameters, dict):
        raise ToolError("tools", f"{where}.function.parameters must be a JSON Schema object, got "
                                 f"{describe(parameters)}")
    try:
        json.dumps(parameters)
    except (TypeError, ValueError) as exc:
        raise ToolError("tools", f"{where}.function.parameters is not JSON: {exc}") from None
    function = {"name": name}
    if description is not None:
        function["description"] = description
    function["parameters"] = parameters
    return Tool(name, description, parameters, {"type": "function", "function": function})


def check_tool_request(tools, tool_choice=None, parallel_tool_calls=None) -> ToolRequest | None:
    """The checked tool fields of a request (None when it has neither tools nor a tool_choice).
    Defaults are OpenAI's: "auto" when tools are given, parallel calls allowed."""
    if tools is None and tool_choice is None:
        if parallel_tool_calls is not None and not isinstance(parallel_tool_calls, bool):
            raise ToolError("parallel_tool_calls", f"parallel_tool_calls must be a boolean, got "
                                                   f"{describe(parallel_tool_calls)}")
        return None
    if tools is None:
        tools = []
    if not isinstance(tools, (list, tuple)):
        raise ToolError("tools", f"tools must be a list of function definitions, got {describe(tools)}")
    checked = tuple(_check_tool(i, t) for i, t in enumerate(tools))
    names = [t.name for t in checked]
    for name in names:
        if names.count(name) > 1:
            raise ToolError("tools", f"tools: the function name {name!r} is given twice")
    choice = "auto" if checked else "none"
    if tool_choice is not None:
        if isinstance(tool_choice, str):
            if tool_choice not in CHOICES:
                raise ToolError("tool_choice", f"tool_choice must be 'auto', 'none', 'required' or "
                                               f"{{'type': 'function', 'function': {{'name': ...}}}}, "
                                               f"got {describe(tool_choice)}")
            choice = tool_choice
        elif isinstance(tool_choice, dict) and tool_choice.get("type", "function") == "function" \
                and isinstance(tool_choice.get("function"), dict):
            choice = tool_choice["function"].get("name")
            if choice not in names:
                raise ToolError("tool_choice", f"tool_choice names the function {describe(choice)}, which is "
                                               f"not in tools ({', '.join(names) or 'none given'})")
        else:
            raise ToolError("tool_choice", f"tool_choice must be 'auto', 'none', 'required' or "
                                           f"{{'type': 'function', 'function': {{'name': ...}}}}, "
                                           f"got {describe(tool_choice)}")
        if choice == "required" and not checked:
            raise ToolError("tool_choice", "tool_choice 'required' needs at least one function in tools")
    if parallel_tool_calls is None:
        parallel = True
    elif isinstance(parallel_tool_calls, bool):
        parallel = parallel_tool_calls
    else:
        raise ToolError("parallel_tool_calls", f"parallel_tool_calls must be a boolean, got "
                                               f"{describe(parallel_tool_calls)}")
    return ToolRequest(checked, choice, parallel)


def _arguments(where: str, value):
    """A call's arguments as the JSON value templates render: OpenAI sends a JSON string."""
    if isinstance(value, str):
        try:
            return json.loads(value) if value.strip() else {}
        except ValueError:
            raise ToolError("messages", f"{where}.function.arguments is not valid JSON: {describe(value)}") from None
    if isinstance(value, dict):
        return value
    raise ToolError("messages", f"{where}.function.arguments must be a JSON string, got {describe(value)}")


def message_tool_fields(i: int, message: dict) -> dict:
    """The tool fields of an OpenAI chat message, checked: an assistant's tool_calls (as
    [{"id", "type", "function": {"name", "arguments": str}}]), a tool message's
    tool_call_id, a tool / function message's name. Empty for a message with none."""
    out = {}
    calls = message.get("tool_calls")
    if calls is not None:
        if message.get("role") != "assistant":
            raise ToolError("messages", f"messages[{i}]: only an assistant message has tool_calls")
        if not isinstance(calls, list):
            raise ToolError("messages", f"messages[{i}].tool_calls must be a list, got {describe(calls)}")
        checked = []
        for j, call in enumerate(calls):
            where = f"messages[{i}].tool_calls[{j}]"
            fn = call.get("function") if isinstance(call, dict) else None
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise ToolError("messages", f"{where} must be {{'id', 'type': 'function', 'function': "
                                            f"{{'name', 'arguments'}}}}, got {describe(call)}")
            arguments = fn.get("arguments", "{}")
            _arguments(where, arguments)
            cid = call.get("id")
            if cid is not None and not isinstance(cid, str):
                raise ToolError("messages", f"{where}.id must be a string, got {describe(cid)}")
            checked.append({"id": cid or f"call_{i}_{j}", "type": "function",
                            "function": {"name": fn["name"], "arguments":
                                         arguments if isinstance(arguments, str) else json.dumps(arguments)}})
        if checked:
            out["tool_calls"] = checked
    for key in ("tool_call_id", "name"):
        value = message.get(key)
        if value is not None:
            if not isinstance(value, str):
                raise ToolError("messages", f"messages[{i}].{key} must be a string, got {describe(value)}")
            out[key] = value
    if message.get("role") == "tool" and "tool_call_id" not in out:
        raise ToolError("messages", f"messages[{i}]: a tool message needs the tool_call_id of the call it answers")
    return out


# --- rendering --------------------------------------------------------------------------

def _has_tool_turns(messages) -> bool:
    return any(m.get("tool_calls") or m.get("role") == "tool" for m in messages)


def _native_messages(messages) -> list:
    """Messages as chat templates read them: a call's arguments as a JSON value (templates
    apply tojson to it), content "" instead of null."""
    out = []
    for i, m in enumerate(messages):
        m = dict(m)
        if m.get("content") is None:
            m["content"] = ""
        if m.get("tool_calls"):
            m["tool_calls"] = [{"id": c.get("id"), "type": "function",
                                "function": {"name": c["function"]["name"],
                                             "arguments": _arguments(f"messages[{i}].tool_calls[{j}]",
                                                                     c["function"].get("arguments", "{}"))}}
                               for j, c in enumerate(m["tool_calls"])]
        out.append(m)
    return out


def call_text(name: str, arguments) -> str:
    """One call as the model writes it."""
    return f'{OPEN}\n{json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False)}\n{CLOSE}'


def _generic_history(messages) -> list:
    """Tool turns for a template that knows nothing of tools: an assistant's calls become
    its text, tool results become a user turn of <tool_response> blocks (consecutive ones
    merged, and merged into a user turn that follows, so that turns still alternate)."""
    out = []
    for m in messages:
        role = m.get("role")
        if role == "assistant" and m.get("tool_calls"):
            parts = [m["content"]] if m.get("content") else []
            parts += [call_text(c["function"]["name"], _arguments("messages", c["function"]["arguments"]))
                      for c in m["tool_calls"]]
            out.append({"role": "assistant", "content": "\n".join(parts)})
            continue
        if role == "tool":
            text = f"{RESPONSE_OPEN}\n{m.get('content') or ''}\n{RESPONSE_CLOSE}"
        elif role == "user" and out and out[-1].get("_tool"):
            text = m.get("content") or ""
        else:
            out.append({"role": role, "content": m.get("content") or ""})
            continue
        if out and out[-1].get("_tool"):
            out[-1]["content"] += "\n" + text
        else:
            out.append({"role": "user", "content": text, "_tool": True})
    return [{"role": m["role"], "content": m["content"]} for m in out]


def generic_system_prompt(request: ToolRequest) -> str:
    """The tools described for a model whose template does not render them."""
    lines = [json.dumps(t.spec, ensure_ascii=False) for t in request.offered()]
    text = ("You can call functions to answer. Their signatures, one JSON object a line, are between "
            "<tools> and </tools>:\n<tools>\n" + "\n".join(lines) + "\n</tools>\n\n"
            "To call a function, write a JSON object with its name and its arguments between "
            f"{OPEN} and {CLOSE}, like this:\n{OPEN}\n"
            '{"name": "function_name", "arguments": {"argument": "value"}}\n'
            f"{CLOSE}\nWrite one such block per call and nothing after the calls; each result comes back "
            f"between {RESPONSE_OPEN} and {RESPONSE_CLOSE}.")
    if request.choice == "required":
        text += " Answer with at least one function call."
    elif request.choice not in CHOICES:
        text += f" Answer by calling {request.choice}."
    return text


def _with_system(messages: list, text: str) -> list:
    if messages and messages[0].get("role") == "system":
        first = dict(messages[0])
        first["content"] = (first.get("content") or "") + "\n\n" + text
        return [first] + messages[1:]
    return [{"role": "system", "content": text}] + messages


def render(template, messages: list, add_generation_prompt: bool = True, request: ToolRequest | None = None) -> str:
    """The prompt of a conversation: with the offered tools when calls are allowed, through
    the template where it renders `tools` (its own instructions and format), else through
    the generic system prompt. Tool turns in the history go through the template that
    renders tools, else as text in the call format."""
    tools_shown = request is not None and request.calls_allowed
    if not tools_shown and not _has_tool_turns(messages):
        return template.render(messages, add_generation_prompt)
    messages = [{**m, **message_tool_fields(i, m)} for i, m in enumerate(messages)]
    if template.handles_tools:
        extra = {"tools": [t.spec for t in request.offered()]} if tools_shown else {}
        return template.render(_native_messages(messages), add_generation_prompt, **extra)
    messages = _generic_history(messages)
    if tools_shown:
        messages = _with_system(messages, generic_system_prompt(request))
    return template.render(messages, add_generation_prompt)


# --- the constraint ---------------------------------------------------------------------

def _hoisted(schema: dict, where: str) -> tuple:
    """(schema without its $defs / definitions, those definitions): a call's JSON document
    is {"name", "arguments": schema}, so the references "#/$defs/X" a schema makes to its own
    root must find X at the call document's root."""
    schema = dict(schema)
    defs = {}
    for key in ("$defs", "definitions"):
        if key in schema:
            value = schema.pop(key)
            if not isinstance(value, dict):
                raise ToolError("tools", f"{where}: {key} must be an object")
            defs[key] = value
    if '"$ref": "#"' in json.dumps(schema):
        raise ToolError("tools", f"{where}: a $ref to the schema's own root is not supported; use $defs")
    return schema, defs


def _call_schema(tool: Tool) -> dict:
    arguments, defs = _hoisted(tool.parameters, f"tools: function {tool.name}.parameters")
    doc = {"type": "object", "properties": {"name": {"const": tool.name}, "arguments": arguments},
           "required": ["name", "arguments"], "additionalProperties": False,
           "x-guidance": {"whitespace_pattern": _CALL_WHITESPACE}}
    doc.update(defs)
    return doc


def _lark_string(text: str) -> str:
    return json.dumps(text)


def bare_calls(request: ToolRequest | None, text_schema=None) -> bool:
    """Whether a reply may be calls without markers (a JSON call object first): yes, except
    where a text answer is JSON itself (tools "auto" with a response_format)."""
    return (request is not None and request.calls_allowed
            and not (request.choice == "auto" and text_schema is not None))


def grammar(request: ToolRequest | None, special_tokens, text_schema=None, text_ids=frozenset()) -> str | None:
    """The Lark grammar (llguidance's dialect) that the output of a request with tools must
    match, or None when nothing constrains it. special_tokens: the vocabulary's special
    token texts (when the call markers are tokens, the grammar asks for those tokens;
    text_ids: the ids of those that stand for text, Tokenizer.text_special_ids).
    text_schema: a response_format schema the text answer (no calls) must match."""
    if request is None:
        return None
    calls_allowed = request.calls_allowed
    bare = bare_calls(request, text_schema)
    if text_schema is not None:
        from ignis.runtime.constraint import schema_text
        text_rule = f"text: %json {schema_text(text_schema)}"
    else:
        text_rule = "text: TEXT"
    # text never holds the call marker; where a reply may be a bare call it does not start with "{"
    first = "[^{\\s]" if bare else "(?s:.)"
    rules = [text_rule, f"TEXT: /{first}(?s:.*)/ & ~/(?s:.*){re.escape(OPEN)}(?s:.*)/"]
    if not calls_allowed:
        return "\n".join(["start: text"] + rules)
    offered = request.offered()
    # calls are separated by SEP; whitespace may close the reply (a model that ends a line
    # after its call is not pushed into another one)
    more = " (SEP call)* SEP?" if request.parallel else " SEP?"
    rules += [f"body_{i}: %json {json.dumps(_call_schema(t), ensure_ascii=False)}" for i, t in enumerate(offered)]
    rules.append("body: " + " | ".join(f"body_{i}" for i in range(len(offered))))
    rules.append("SEP: /[ \\n]{1,3}/")
    rules.append(f"calls: call{more}")
    rules.append("bare: body" + (" (SEP body)* SEP?" if request.parallel else " SEP?"))
    lead = ["calls"] + (["bare"] if bare else [])
    if OPEN in special_tokens and CLOSE in special_tokens and special_tokens[OPEN] not in text_ids:
        # the markers are single tokens, which text never contains
        rules.append(f'call: {OPEN} "\\n" body "\\n" {CLOSE}')
        if request.choice == "auto":
            lead += ["text"] if text_schema is not None else ["text", "text calls"]
    else:
        # the markers are text: text before a call holds no marker
        close = _lark_string(chr(10) + CLOSE)
        rules.append(f"call: {_lark_string(OPEN + chr(10))} body {close}")
        if request.choice == "auto" and text_schema is not None:
            lead += ["text"]
        elif request.choice == "auto":
            lead += ["text", f"HEAD body {close}{more}"]
            rules.append(f"NOMARK: /(?s:.*)/ & ~/(?s:.*){re.escape(OPEN)}(?s:.*)/")
            rules.append(f"HEAD: NOMARK {_lark_string(OPEN + chr(10))}")
    return "\n".join(["start: " + " | ".join(lead)] + rules)


def check_compiles(compile_grammar, request: ToolRequest, lark: str | None):
    """Compile the grammar (compile_grammar: Model.constraint's grammar road), naming the
    request's tools in the error when llguidance refuses a schema."""
    if lark is None:
        return None
    try:
        return compile_grammar(lark)
    except ConstraintError as exc:
        names = ", ".join(t.name for t in request.offered()) if request else ""
        raise ToolError("tools", f"tools ({names}): a parameters schema cannot constrain generation: "
                                 f"{str(exc).removeprefix('grammar: ')}") from None
