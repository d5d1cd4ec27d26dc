"""Tool calls (ignis.runtime.tools, toolparse, toolchat): request checks, rendering through a
template that renders tools and through the generic prompt, the grammar that keeps calls
valid (a tiny random model sampling under it, checked by jsonschema), and the parser whose
streamed deltas reassemble to the whole message."""
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ignis.errors import ArgumentError, IgnisError
from ignis.runtime.chat import ChatTemplate
from ignis.runtime.toolparse import CallParser, parse_reply
from ignis.runtime.tools import ToolError, check_tool_request, grammar, render

jsonschema = pytest.importorskip("jsonschema")

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12},
                                                    "unit": {"enum": ["c", "f"]}},
                   "required": ["city"], "additionalProperties": False}}}
ADD = {"type": "function", "function": {
    "name": "add", "parameters": {"type": "object", "properties": {"a": {"type": "integer", "minimum": -99, "maximum": 99},
                                                                "b": {"type": "integer", "minimum": 0, "maximum": 9}},
                                  "required": ["a", "b"], "additionalProperties": False}}}
# a pydantic-style schema: the arguments refer to their own $defs
POINT = {"type": "function", "function": {
    "name": "plot", "parameters": {"type": "object", "$defs": {"P": {"type": "object", "properties": {
        "x": {"type": "integer", "maximum": 9, "minimum": 0}, "y": {"type": "boolean"}}, "required": ["x", "y"], "additionalProperties": False}},
        "properties": {"p": {"$ref": "#/$defs/P"}}, "required": ["p"], "additionalProperties": False}}}
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in (WEATHER, ADD, POINT)}

# a template that renders tools itself, in the way Qwen 2.5's does (tools as JSON lines in the
# system turn, calls as <tool_call> blocks with tojson arguments, tool results in a user turn)
NATIVE = (
    "{% if tools %}<|im_start|>system\nTOOLS:{% for t in tools %}\n{{ t | tojson }}{% endfor %}<|im_end|>\n{% endif %}"
    "{% for m in messages %}{% if m.role == 'assistant' and m.tool_calls %}<|im_start|>assistant"
    "{% for c in m.tool_calls %}\n<tool_call>\n{\"name\": \"{{ c.function.name }}\", \"arguments\": "
    "{{ c.function.arguments | tojson }}}\n</tool_call>{% endfor %}<|im_end|>\n"
    "{% elif m.role == 'tool' %}<|im_start|>user\n<tool_response>\n{{ m.content }}\n</tool_response><|im_end|>\n"
    "{% else %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")

HISTORY = [
    {"role": "user", "content": "Weather in Oslo?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "4 C, rain"},
]


def test_request_checks():
    r = check_tool_request([WEATHER, ADD])
    assert (r.choice, r.parallel, [t.name for t in r.tools]) == ("auto", True, ["get_weather", "add"])
    assert check_tool_request(None) is None
    assert check_tool_request([WEATHER], {"type": "function", "function": {"name": "get_weather"}}).choice == "get_weather"
    assert check_tool_request([WEATHER], "none", False).parallel is False
    bad = [
        (("nope",), "tools"), (([{"type": "function"}],), "tools"),
        (([{"type": "function", "function": {"name": "bad name"}}],), "tools"),
        (([WEATHER, WEATHER],), "tools"), (([WEATHER], "sometimes"), "tool_choice"),
        (([WEATHER], {"type": "function", "function": {"name": "other"}}), "tool_choice"),
        (([], "required"), "tool_choice"), (([WEATHER], None, "yes"), "parallel_tool_calls"),
        (([{"type": "function", "function": {"name": "f", "parameters": [1]}}],), "tools"),
    ]
    for args, param in bad:
        with pytest.raises(ToolError) as info:
            check_tool_request(*args)
        assert info.value.param == param and "\n" not in str(info.value)


def test_native_template_renders_tools_and_history():
    template = ChatTemplate(NATIVE)
    assert template.handles_tools
    text = render(template, HISTORY, True, check_tool_request([WEATHER]))
    assert 'TOOLS:{"type": "function", "function": {"name": "get_weather"' in text
    # the arguments string went in as a JSON value (not a doubly-encoded string)
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>' in text
    assert "<tool_response>\n4 C, rain\n</tool_response>" in text
    # tool_choice "none": no tools shown, the history still rendered by the template
    text = render(template, HISTORY, True, check_tool_request([WEATHER], "none"))
    assert "TOOLS" not in text and "<tool_response>" in text


def test_generic_rendering_for_a_template_without_tools():
    template = ChatTemplate(CHATML)
    assert not template.handles_tools
    r = check_tool_request([WEATHER, ADD], {"type": "function", "function": {"name": "add"}})
    text = render(template, [{"role": "system", "content": "Be brief."}] + HISTORY, True, r)
    system = text.split("<|im_end|>")[0]
    assert system.startswith("<|im_start|>system\nBe brief.\n\n")
    assert '"name": "add"' in system and '"name": "get_weather"' not in system     # only the named one
    assert "<tool_call>" in system and "Answer by calling add." in system
    assert '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>' in text
    assert "<|im_start|>user\n<tool_response>\n4 C, rain\n</tool_response><|im_end|>" in text
    # no tools and no tool turns: exactly the template's own rendering
    plain = [{"role": "user", "content": "hi"}]
    assert render(template, plain, True, None) == template.render(plain, True)


def test_message_checks():
    template = ChatTemplate(CHATML)
    for bad in ([{"role": "tool", "content": "x"}],
                [{"role": "assistant", "content": None, "tool_calls": [{"function": {"name": "f", "arguments": "{"}}]}],
                [{"role": "user", "content": "x", "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]}]):
        with pytest.raises(ToolError):
            render(template, bad, True, None)


def _valid_message(message, names, parallel=True):
    """The oracle: every call names an offered tool and its arguments validate."""
    for call in message.get("tool_calls") or []:
        assert call["type"] == "function" and call["id"].startswith("call_")
        assert call["function"]["name"] in names
        jsonschema.validate(json.loads(call["function"]["arguments"]), SCHEMAS[call["function"]["name"]])
    if not parallel:
        assert len(message.get("tool_calls") or []) <= 1


@pytest.fixture(scope="module")
def tiny(tiny_model):
    import ignis
    path = tiny_model(n_ctx=4096, seed=5)
    with ignis.load(path, n_ctx=4096, threads=1) as model:
        yield model


@pytest.mark.parametrize("choice", ["required", "named", "auto"])
def test_random_model_under_the_grammar_always_makes_valid_calls(tiny, choice):
    """A random model samples anything the grammar allows: every reply must still parse,
    name offered tools only and carry schema-valid arguments."""
    tools = [WEATHER, ADD, POINT]
    tool_choice = {"type": "function", "function": {"name": "plot"}} if choice == "named" else choice
    names = {"plot"} if choice == "named" else set(SCHEMAS)
    seen_calls = 0
    for seed in range(6):
        msg = tiny.chat([{"role": "user", "content": "go"}], tools=tools, tool_choice=tool_choice,
                        max_tokens=400, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=seed,
                        parallel_tool_calls=seed % 2 == 0)
        _valid_message(msg, names, parallel=seed % 2 == 0)
        if choice != "auto":
            assert msg["tool_calls"], msg
        else:
            # text holds no marker, unless it is a call cut short by max_tokens
            assert (msg.get("tool_calls") or "<tool_call>" not in msg["content"]
                    or tiny.last_result.finish_reason == "length")
        seen_calls += len(msg.get("tool_calls") or [])
    assert choice == "auto" or seen_calls >= 6


def test_tool_choice_none_never_calls(tiny):
    for seed in range(3):
        msg = tiny.chat([{"role": "user", "content": "go"}], tools=[WEATHER], tool_choice="none", max_tokens=200,
                        temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=seed)
        assert "tool_calls" not in msg and "<tool_call>" not in msg["content"]


def test_stream_equals_whole_reply(tiny):
    kw = dict(tools=[WEATHER, ADD], tool_choice="required", max_tokens=300, temperature=1.0, top_k=0, seed=11)
    whole = tiny.chat([{"role": "user", "content": "go"}], **kw)
    deltas = list(tiny.chat([{"role": "user", "content": "go"}], stream=True, **kw))
    assert _reassemble(deltas)[1] == [(c["function"]["name"], c["function"]["arguments"]) for c in whole["tool_calls"]]
    assert all("id" in d["tool_calls"][0] and d["tool_calls"][0]["function"]["arguments"] == ""
               for d in deltas if "tool_calls" in d and "name" in d["tool_calls"][0]["function"])


def test_bad_tool_schema_and_combinations_are_refused(tiny):
    bad = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
        "x": {"type": "string", "pattern": "(unclosed"}}}}}
    with pytest.raises(IgnisError, match="tools"):
        tiny.chat([{"role": "user", "content": "go"}], tools=[bad], max_tokens=4)
    with pytest.raises(ArgumentError, match="regex"):
        tiny.chat([{"role": "user", "content": "go"}], tools=[WEATHER], regex="a+", max_tokens=4)


def test_grammar_text_answer_shaped_by_a_schema(tiny):
    """tools "auto" with response_format: a text answer matches the schema; calls stay possible."""
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"],
              "additionalProperties": False}
    lark = grammar(check_tool_request([WEATHER]), tiny.tokenizer.special_tokens, schema)
    assert "%json" in lark and '"answer"' in lark
    for seed in range(3):
        msg = tiny.chat([{"role": "user", "content": "go"}], tools=[WEATHER], json_schema=schema, max_tokens=200,
                        temperature=1.0, top_k=0, seed=seed)
        if "tool_calls" not in msg:
            jsonschema.validate(json.loads(msg["content"]), schema)
        else:
            _valid_message(msg, {"get_weather"})


def _reassemble(deltas):
    content, calls = "", {}
    for d in deltas:
        content += d.get("content") or ""
        for c in d.get("tool_calls") or []:
            entry = calls.setdefault(c["index"], ["", ""])
            if "id" in c:
                entry[0] = c["function"]["name"]
            entry[1] += c["function"].get("arguments") or ""
    return content, [tuple(v) for _, v in sorted(calls.items())]


REPLIES = [
    'Let me look.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Pa\\"ris }"}}\n</tool_call>\n'
    '<tool_call>\n{"name":"add","arguments":{"a":1,"b":[2,{"c":3}]}}\n</tool_call>',
    '{"name": "add", "arguments": {"a": 1, "b": 2}}\n{"name": "plot", "arguments": {"p": {"x": 1, "y": 2}}}',
    "Just text, with a < sign and <tool and {braces}.",
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>',
]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(REPLIES), st.lists(st.integers(1, 7), min_size=1, max_size=200))
def test_streamed_deltas_reassemble_to_the_message(reply, cuts):
    parser, deltas, at = CallParser(), [], 0
    for k in cuts:
        if at >= len(reply):
            break
        deltas += parser.feed(reply[at:at + k])
        at += k
    deltas += parser.feed(reply[at:])
    deltas += parser.finish()
    message, _ = parse_reply(reply)
    content, calls = _reassemble(deltas)
    # as OpenAI streams a call: its id, type and name first (arguments ""), then the arguments
    starts = [d["tool_calls"][0] for d in deltas if "tool_calls" in d and "id" in d["tool_calls"][0]]
    assert all(s["type"] == "function" and s["function"]["arguments"] == "" for s in starts)
    assert [s["index"] for s in starts] == list(range(len(starts)))
    assert content == (message["content"] or "")
    assert calls == [(c["function"]["name"], c["function"]["arguments"]) for c in message.get("tool_calls", [])]


def test_parsed_messages():
    m, p = parse_reply(REPLIES[0])
    assert m["content"] == "Let me look." and p.finish_reason("stop") == "tool_calls"
    assert [json.loads(c["function"]["arguments"]) for c in m["tool_calls"]] == [
        {"city": 'Pa"ris }'}, {"a": 1, "b": [2, {"c": 3}]}]
    m, p = parse_reply(REPLIES[1])
    assert m["content"] is None and [c["function"]["name"] for c in m["tool_calls"]] == ["add", "plot"]
    m, p = parse_reply(REPLIES[2])
    assert m == {"role": "assistant", "content": REPLIES[2]} and p.finish_reason("stop") == "stop"
    # a call cut short (max_tokens): no call, the text as written
    m, p = parse_reply(REPLIES[3][:30])
    assert m == {"role": "assistant", "content": REPLIES[3][:30]} and p.finish_reason("length") == "length"


# -- the catalogue's chat models through the generic rendering ------------------------------

@pytest.mark.real
@pytest.mark.slow
@pytest.mark.parametrize("fixture", ["smollm2_path", "gemma3_path"])
def test_catalogue_models_without_tool_templates(request, fixture):
    """SmolLM2 and Gemma 3 have no template that renders tools: the generic prompt is used,
    and whatever they write, calls are valid ("required", a named function, "auto") and
    "none" gives none."""
    import ignis
    strict = {"type": "function", "function": {**WEATHER["function"], "parameters": {
        "type": "object", "properties": {"city": {"type": "string", "maxLength": 40}}, "required": ["city"],
        "additionalProperties": False}}}
    question = [{"role": "user", "content": "What's the weather like in Paris right now?"}]
    with ignis.load(request.getfixturevalue(fixture), n_ctx=2048) as model:
        assert not model.chat_template().handles_tools
        for choice in ("required", {"type": "function", "function": {"name": "get_weather"}}, "auto"):
            msg = model.chat(question, tools=[strict, ADD], tool_choice=choice, temperature=0, max_tokens=80)
            for call in msg.get("tool_calls") or []:
                assert call["function"]["name"] in ("get_weather", "add")
                schema = strict["function"]["parameters"] if call["function"]["name"] == "get_weather" \
                    else SCHEMAS["add"]
                jsonschema.validate(json.loads(call["function"]["arguments"]), schema)
            if choice != "auto":
                assert msg.get("tool_calls"), msg
            if isinstance(choice, dict):
                assert {c["function"]["name"] for c in msg["tool_calls"]} == {"get_weather"}
        msg = model.chat(question, tools=[strict], tool_choice="none", temperature=0, max_tokens=24)
        assert "tool_calls" not in msg and "<tool_call>" not in msg["content"]


# -- the default model's round trip, against a reference rendering ---------------------------

def _reference_prompt(path, messages, tools):
    """The oracle: the file's chat template read by gguf and rendered by plain jinja2 the way
    Transformers' apply_chat_template does it (tojson without ASCII escapes, trimmed blocks),
    with each call's arguments as a JSON object, Transformers' convention. llama-server
    --jinja renders this same text for these messages (its /apply-template, checked by hand)."""
    gguf = pytest.importorskip("gguf")
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    field = gguf.GGUFReader(path).fields["tokenizer.chat_template"]
    source = bytes(field.parts[field.data[0]]).decode()
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson"] = lambda x, indent=None: json.dumps(x, ensure_ascii=False, indent=indent)
    as_objects = []
    for m in messages:
        m = dict(m)
        if m.get("tool_calls"):
            m["tool_calls"] = [{**c, "function": {**c["function"], "arguments": json.loads(c["function"]["arguments"])}}
                               for c in m["tool_calls"]]
        as_objects.append(m)
    return env.from_string(source).render(messages=as_objects, tools=tools, add_generation_prompt=True)


@pytest.mark.real
@pytest.mark.slow
def test_round_trip_prompt_matches_the_reference_rendering(real_model_path):
    """The prompt after a tool result (tools, the question, the assistant's call with its
    arguments as the JSON string OpenAI clients send, the tool's result) is the template's own
    rendering byte for byte, and its tokens are llama.cpp's (special tokens parsed). So when
    Qwen2.5-Coder-0.5B calls the tool again instead of answering, it does so on the same
    prompt as under llama.cpp: the model's choice, not a rendering of ours."""
    import ignis
    llama_cpp = pytest.importorskip("llama_cpp")
    weather = {"type": "function", "function": {
        "name": "get_weather", "description": "Get the current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "The city"}},
                       "required": ["city"], "additionalProperties": False}}}
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    call2 = {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Nice"}'}}
    question = {"role": "user", "content": "What's the weather like in Paris right now?"}
    conversations = [
        [question, {"role": "assistant", "content": None, "tool_calls": [call]},
         {"role": "tool", "tool_call_id": "call_1",
          "content": '{"city": "Paris", "temperature_c": 18, "sky": "cloudy"}'}],
        # a system prompt (it replaces the default one), two calls with text before them, two results
        [{"role": "system", "content": "Answer questions about the weather."}, question,
         {"role": "assistant", "content": "Let me look.", "tool_calls": [call, call2]},
         {"role": "tool", "tool_call_id": "call_1", "content": "18 C, cloudy"},
         {"role": "tool", "tool_call_id": "call_2", "content": "Nice: 21 °C, sunny"}],
    ]
    vocab = llama_cpp.Llama(real_model_path, vocab_only=True, verbose=False)
    with ignis.load(real_model_path, n_ctx=2048, threads=1) as model:
        for messages in conversations:
            ours = render(model.chat_template(), messages, True, check_tool_request([weather]))
            assert ours == _reference_prompt(real_model_path, messages, [weather])
            assert ours.endswith("</tool_response><|im_end|>\n<|im_start|>assistant\n")
            assert list(model.tokenize(ours)) == vocab.tokenize(ours.encode(), add_bos=False, special=True)
