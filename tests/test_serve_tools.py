"""Tool calls and the clients people use, against a real `ignis serve` on 127.0.0.1 with the
default model: the openai client (calls, the result sent back, streaming, tool_choice),
openai-agents, langchain-openai, instructor and litellm; and the chat page at /."""
import json

import pytest

openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")
jsonschema = pytest.importorskip("jsonschema")
from test_serve import _Server  # noqa: E402

pytestmark = [pytest.mark.real, pytest.mark.slow]

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "The city"}},
                   "required": ["city"], "additionalProperties": False}}}
QUESTION = [{"role": "user", "content": "What's the weather like in Paris right now?"}]


@pytest.fixture(scope="module")
def server(real_model_path):
    srv = _Server(real_model_path, "--parallel", "2")
    yield srv
    code, err = srv.stop()
    assert code == 0, err[-2000:]
    assert "Traceback" not in err, err[-2000:]


@pytest.fixture(scope="module")
def client(server):
    return server.client()


def _call(message):
    assert message.tool_calls, message
    call = message.tool_calls[0]
    assert call.type == "function" and call.id.startswith("call_")
    return call.function.name, json.loads(call.function.arguments)


def test_weather_call_and_the_result_sent_back(client):
    r = client.chat.completions.create(model="any", messages=QUESTION, tools=[WEATHER], temperature=0,
                                       max_tokens=100)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    name, args = _call(choice.message)
    assert name == "get_weather" and "paris" in args["city"].lower()
    # the call and its result go back (the assistant message with content null, a tool message)
    history = QUESTION + [choice.message.model_dump(exclude_none=True),
                          {"role": "tool", "tool_call_id": choice.message.tool_calls[0].id,
                           "content": json.dumps({"city": "Paris", "temperature_c": 18, "sky": "cloudy"})}]
    r2 = client.chat.completions.create(model="any", messages=history, tools=[WEATHER], temperature=0,
                                        max_tokens=60)
    m2 = r2.choices[0].message
    # always valid, whatever this small model chooses: a text answer, or a call to the tool
    # with schema-valid arguments (Qwen2.5-Coder-0.5B repeats the call: see the report)
    if m2.tool_calls:
        for call in m2.tool_calls:
            assert call.function.name == "get_weather"
            jsonschema.validate(json.loads(call.function.arguments), WEATHER["function"]["parameters"])
    else:
        assert m2.content and r2.choices[0].finish_reason in ("stop", "length")
    # the result reached the prompt through the template
    assert r2.usage.prompt_tokens > r.usage.prompt_tokens + 20


def test_streamed_call_reassembles_to_the_same_call(client):
    whole = client.chat.completions.create(model="any", messages=QUESTION, tools=[WEATHER], temperature=0,
                                           max_tokens=100).choices[0].message
    calls, reasons, content = {}, [], ""
    for chunk in client.chat.completions.create(model="any", messages=QUESTION, tools=[WEATHER], temperature=0,
                                                max_tokens=100, stream=True):
        for c in chunk.choices:
            content += c.delta.content or ""
            if c.finish_reason:
                reasons.append(c.finish_reason)
            for d in c.delta.tool_calls or []:
                entry = calls.setdefault(d.index, {"id": None, "name": None, "arguments": ""})
                if d.id:
                    assert entry["id"] is None and d.function.name and d.function.arguments == ""
                    entry["id"], entry["name"] = d.id, d.function.name
                entry["arguments"] += d.function.arguments or ""
    assert reasons == ["tool_calls"] and content == ""
    assert [(c["name"], c["arguments"]) for _, c in sorted(calls.items())] == [
        (t.function.name, t.function.arguments) for t in whole.tool_calls]


def test_required_and_named_give_a_valid_call_for_an_unrelated_question(client):
    haiku = [{"role": "user", "content": "Write a haiku about the sea."}]
    for choice in ("required", {"type": "function", "function": {"name": "get_weather"}}):
        r = client.chat.completions.create(model="any", messages=haiku, tools=[WEATHER], tool_choice=choice,
                                           temperature=0, max_tokens=100)
        name, args = _call(r.choices[0].message)
        assert name == "get_weather" and r.choices[0].finish_reason == "tool_calls"
        jsonschema.validate(args, WEATHER["function"]["parameters"])


def test_none_gives_no_call(client):
    r = client.chat.completions.create(model="any", messages=QUESTION, tools=[WEATHER], tool_choice="none",
                                       temperature=0, max_tokens=40)
    m = r.choices[0].message
    assert not m.tool_calls and m.content and "<tool_call>" not in m.content


def test_bad_tool_fields_are_400(client):
    for kwargs, param in (({"tools": [{"type": "function", "function": {"name": "a b"}}]}, "tools"),
                          ({"tools": [WEATHER], "tool_choice": "always"}, "tool_choice"),
                          ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "x"}}},
                           "tool_choice")):
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(model="any", messages=QUESTION, max_tokens=4, **kwargs)
        assert info.value.body["param"] == param


def test_chat_page_is_served(server):
    r = httpx.get(server.base + "/", timeout=10)       # no key needed: the page asks for it
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "/v1/chat/completions" in r.text and "<script" in r.text
    assert "http://" not in r.text and "https://" not in r.text        # nothing fetched from elsewhere


# -- the clients -------------------------------------------------------------------------

def test_openai_agents_runs_a_function_tool(server):
    agents = pytest.importorskip("agents")
    from openai import AsyncOpenAI
    called = []

    @agents.function_tool
    def get_weather(city: str) -> str:
        """Get the current weather in a city."""
        called.append(city)
        return f"The weather in {city} is 18 degrees Celsius and cloudy."

    agents.set_tracing_disabled(True)
    model = agents.OpenAIChatCompletionsModel(model="ignis", openai_client=server.client(cls=AsyncOpenAI))
    # the run ends on the tool's output (the SDK's stop_on_first_tool): the default model calls
    # the tool again rather than answering from its result, with the template's own prompt
    # (test_tools.py::test_round_trip_prompt_matches_the_reference_rendering) and under
    # llama-server --jinja alike; the issue's bar for a final answer is open (issue 24's note)
    agent = agents.Agent(name="weather", instructions="Answer questions about the weather.", model=model,
                         tools=[get_weather], tool_use_behavior="stop_on_first_tool",
                         model_settings=agents.ModelSettings(temperature=0, max_tokens=100))
    result = agents.Runner.run_sync(agent, "What's the weather like in Paris right now?", max_turns=3)
    assert called and "paris" in called[0].lower()
    assert "18 degrees" in result.final_output


def test_langchain_bind_tools_and_structured_output(server):
    lc = pytest.importorskip("langchain_openai")
    from pydantic import BaseModel

    def get_weather(city: str) -> str:
        """Get the current weather in a city."""
        return "18 C"

    llm = lc.ChatOpenAI(model="ignis", base_url=server.base + "/v1", api_key="test-key", temperature=0,
                        max_tokens=100, max_retries=0)
    msg = llm.bind_tools([get_weather]).invoke("What's the weather like in Paris right now?")
    assert msg.tool_calls and msg.tool_calls[0]["name"] == "get_weather"
    assert "paris" in msg.tool_calls[0]["args"]["city"].lower()

    class City(BaseModel):
        name: str
        country: str

    for method in ("json_schema", "function_calling"):
        city = llm.with_structured_output(City, method=method).invoke("Paris is the capital of France. "
                                                                      "Give the city and its country.")
        assert isinstance(city, City) and city.name and city.country, method


def test_instructor_tools_and_json_schema_modes(server):
    instructor = pytest.importorskip("instructor")
    from pydantic import BaseModel

    class Person(BaseModel):
        name: str
        age: int

    for mode in (instructor.Mode.TOOLS, instructor.Mode.JSON_SCHEMA):
        client = instructor.from_openai(server.client(), mode=mode)
        person = client.chat.completions.create(
            model="ignis", response_model=Person, max_retries=0, temperature=0, max_tokens=100,
            messages=[{"role": "user", "content": "Extract the person: John Smith is 42 years old."}])
        assert isinstance(person, Person) and "john" in person.name.lower() and person.age == 42, mode


def test_litellm_completion_streamed_and_not(server):
    litellm = pytest.importorskip("litellm")
    kw = dict(model="openai/ignis", api_base=server.base + "/v1", api_key="test-key", temperature=0, max_tokens=12,
              messages=[{"role": "user", "content": "Say hello."}])
    whole = litellm.completion(**kw)
    text = whole.choices[0].message.content
    assert text and whole.usage.completion_tokens > 0
    pieces = [c.choices[0].delta.content or "" for c in litellm.completion(stream=True, **kw) if c.choices]
    assert "".join(pieces) == text
    r = litellm.completion(**{**kw, "max_tokens": 100, "messages": QUESTION}, tools=[WEATHER])
    call = r.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and "paris" in json.loads(call.function.arguments)["city"].lower()
