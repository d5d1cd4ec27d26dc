"""Chat prompts: render the GGUF's `tokenizer.chat_template` (Jinja) with jinja2's sandbox."""
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


class ChatTemplate:
    def __init__(self, source: str | None, bos_token: str = "", eos_token: str = ""):
        from jinja2.exceptions import TemplateError
        from jinja2.sandbox import ImmutableSandboxedEnvironment
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = _raise
        try:
            self.template = env.from_string(source or CHATML)
        except TemplateError as e:
            raise IgnisError(f"chat template does not parse: {e}") from None
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
