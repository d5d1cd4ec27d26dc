"""Chat prompts: render the GGUF's `tokenizer.chat_template` (Jinja) with jinja2's sandbox."""
import json

from ignis.errors import IgnisError

# used when a file carries no template: the ChatML layout Qwen2 models are trained on
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


# Gemma's turn layout, for a file whose vocabulary has Gemma's turn markers but no template
# (Gemma 3 270M base): a system message opens the first user turn, the assistant is "model"
GEMMA_TURNS = ("{% set ns = namespace(system='') %}"
               "{% for m in messages %}{% if m['role'] == 'system' %}{% set ns.system = m['content'] + '\n\n' %}"
               "{% else %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n"
               "{% if m['role'] == 'user' %}{{ ns.system }}{% set ns.system = '' %}{% endif %}"
               "{{ m['content'] | trim }}<end_of_turn>\n{% endif %}{% endfor %}"
               "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")


def default_template(special_tokens) -> str:
    """The template of a file without one, by the turn markers its vocabulary has."""
    if "<start_of_turn>" in special_tokens and "<end_of_turn>" in special_tokens:
        return GEMMA_TURNS
    return CHATML


def _raise(message):
    raise IgnisError(f"chat template: {message}")


def _tojson(value, indent=None, separators=None, sort_keys=False, ensure_ascii=False):
    """tojson as chat templates are written for: plain JSON (jinja2's own escapes <, >, &
    and ' for HTML, which would change the tool signatures a template renders)."""
    return json.dumps(value, indent=indent, separators=separators, sort_keys=sort_keys, ensure_ascii=ensure_ascii)


class ChatTemplate:
    def __init__(self, source: str | None, bos_token: str = "", eos_token: str = ""):
        from jinja2.exceptions import TemplateError
        from jinja2.sandbox import ImmutableSandboxedEnvironment
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        from jinja2 import meta
        env.globals["raise_exception"] = _raise
        env.filters["tojson"] = _tojson
        try:
            self.template = env.from_string(source or CHATML)
            names = meta.find_undeclared_variables(env.parse(source or CHATML))
        except TemplateError as e:
            raise IgnisError(f"chat template does not parse: {e}") from None
        # a template that reads `tools` renders them (and its own call format) itself
        self.handles_tools = "tools" in names
        self.bos_token, self.eos_token = bos_token, eos_token

    def render(self, messages: list, add_generation_prompt: bool = True, **extra) -> str:
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or "role" not in m or "content" not in m:
                raise IgnisError(f"message {i} must be a dict with 'role' and 'content', got {m!r}")
        from jinja2.exceptions import TemplateError
        try:
            return self.template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                        bos_token=self.bos_token, eos_token=self.eos_token, **extra)
        except TemplateError as e:
            raise IgnisError(f"chat template failed: {e}") from None
