"""`ignis chat`: the interactive loop. Input is read a message at a time (one line, a `\"\"\"`
block or a bracketed paste), lines starting with `/` are commands (/help, /set, /show,
/clear, /bye), and the conversation is trimmed from its oldest turns when it outgrows the
context. Replies stream to stdout; notices and errors are one line on stderr."""
import json
import sys

from ignis.cli.chat_input import enable_line_editing, stdin_messages
from ignis.cli.common import (constraint, constraint_flags, load, model_flag, report_context_limit, sampling,
                              sampling_flags, spec_error, usage_error)
from ignis.errors import ArgumentError, IgnisError

HELP = """\
/help                this list
/set                 show the settings
/set NAME VALUE      change one: temperature, top_k, top_p, min_p, repeat_penalty,
                     presence_penalty, frequency_penalty, seed (or none), max_tokens
/set system TEXT     replace the system prompt
/show                the settings, then the conversation (its size, one message a line)
/clear               forget the conversation (the system prompt stays)
/bye                 quit (also /exit, /quit, Ctrl-D); Ctrl-C stops a reply
\"\"\"                  a line starting with \"\"\" opens a multi-line message, one ending with \"\"\" closes it
                     (a pasted text is one message too)"""

# /set NAME: (the setting it changes, how its value is parsed)
_INT, _FLOAT = "an integer", "a number"
SETTINGS = {
    "temperature": ("temperature", _FLOAT), "temp": ("temperature", _FLOAT),
    "top_k": ("top_k", _INT), "top_p": ("top_p", _FLOAT), "min_p": ("min_p", _FLOAT),
    "repeat_penalty": ("repeat_penalty", _FLOAT), "presence_penalty": ("presence_penalty", _FLOAT),
    "frequency_penalty": ("frequency_penalty", _FLOAT), "seed": ("seed", _INT),
    "max_tokens": ("max_tokens", _INT), "num_predict": ("max_tokens", _INT),
}


def _one_line(text: str, width: int = 70) -> str:
    """text on one line of at most width characters (whitespace runs as one space)."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 1] + "…"


def say(message: str) -> None:
    """A notice or an error of the chat: one line on stderr."""
    sys.stderr.write(f"ignis chat: {message}\n")
    sys.stderr.flush()


# -- fitting the conversation into the context ---------------------------------------------

def split_turns(history: list) -> tuple:
    """(system messages at the start, turns): a turn is a user message and what follows it
    up to the next user message."""
    i = 0
    while i < len(history) and history[i]["role"] == "system":
        i += 1
    turns = []
    for message in history[i:]:
        if message["role"] == "user" or not turns:
            turns.append([])
        turns[-1].append(message)
    return history[:i], turns


def fit_history(history: list, prompt_ids, n_ctx: int, reply_room: int) -> tuple:
    """Drop the oldest turns until the prompt leaves reply_room tokens of the context free;
    the system prompt and the newest turn always stay (if the newest turn fits only with less
    room, it is sent with less). Returns (kept messages, turns dropped, prompt ids), or None
    when the system prompt and the newest turn alone fill the context."""
    system, turns = split_turns(history)
    for dropped in range(len(turns)):
        kept = system + [m for turn in turns[dropped:] for m in turn]
        ids = prompt_ids(kept)
        if len(ids) + reply_room <= n_ctx:
            return kept, dropped, ids
    if turns and len(ids) < n_ctx:          # the newest turn alone, with room for some reply
        return kept, len(turns) - 1, ids
    return None


# -- the session -------------------------------------------------------------------------------

class ChatSession:
    """The conversation, the sampling settings and the model; one method a user action."""

    def __init__(self, model, settings: dict, max_tokens: int, system: str | None, constraint: dict | None = None,
                 speculative: str | None = None):
        self.model = model
        self.speculative = speculative      # None, "ngram" or "draft" (the text is the same either way)
        self.settings = dict(settings)      # generate()'s sampling keywords
        self.constraint = dict(constraint or {})    # json_schema, regex or grammar: every reply follows it
        self.max_tokens = max_tokens
        self.history = [{"role": "system", "content": system}] if system else []

    # commands

    def command(self, line: str) -> bool:
        """Run a /command; False when it ends the chat."""
        word, _, rest = line.strip().partition(" ")
        word = word.lower()
        if word in ("/bye", "/exit", "/quit"):
            return False
        if word in ("/help", "/?"):
            print(HELP)
        elif word == "/clear":
            self.history = [m for m in self.history if m["role"] == "system"]
            say("conversation cleared" + (" (the system prompt stays)" if self.history else ""))
        elif word == "/set":
            self.set(rest.strip())
        elif word == "/show":
            self.show()
        else:
            say(f"unknown command {word} (/help lists the commands; to send a text that starts with '/', "
                f"put it in a \"\"\" block)")
        return True

    def set(self, text: str) -> None:
        """/set, /set NAME VALUE, /set system TEXT: a bad name or value is one line, nothing changes."""
        if not text:
            self.show_settings()
            return
        name, _, value = text.partition(" ")
        name, value = name.lower(), value.strip()
        if name == "system":
            if not value:
                say("/set system: give the text of the system prompt")
                return
            self.history = [{"role": "system", "content": value}] + [m for m in self.history
                                                                     if m["role"] != "system"]
            say("system prompt set")
            return
        if name not in SETTINGS:
            say(f"/set: unknown setting {name!r} (one of system, {', '.join(SETTINGS)})")
            return
        if not value:
            say(f"/set {name}: give a value")
            return
        try:
            key, parsed = self._checked(name, value)
        except ArgumentError as e:
            say(f"/set {name}: {e}")
            return
        if key == "max_tokens":
            self.max_tokens = parsed
        else:
            self.settings[key] = parsed
        say(f"{key} = {'random' if parsed is None else parsed}")

    def _checked(self, name: str, value: str) -> tuple:
        """(setting, value) parsed and checked by the rules generate() applies."""
        from ignis.args import INT64_MAX, check_int
        from ignis.runtime.sampling import SamplingParams
        key, kind = SETTINGS[name]
        if key == "seed" and value.lower() in ("none", "random"):
            return key, None
        try:
            parsed = int(value) if kind == _INT else float(value)
        except ValueError:
            raise ArgumentError(f"expected {kind}, got {value!r}") from None
        if key == "max_tokens":
            return key, check_int("max_tokens", parsed, 0, INT64_MAX)
        params = SamplingParams(**{**self.settings, key: parsed})
        params.validate()                   # the one-line ArgumentError names the setting
        return key, getattr(params, key)

    def show_settings(self) -> None:
        for key, value in [*self.settings.items(), ("max_tokens", self.max_tokens)]:
            shown = "random" if key == "seed" and value is None else value
            print(f"{key:18s} {shown}")
        system = [m["content"] for m in self.history if m["role"] == "system"]
        print(f"{'system':18s} {_one_line(system[0]) if system else '(none)'}")
        for key, value in self.constraint.items():      # fixed for the session (a command-line flag)
            print(f"{key:18s} {_one_line(value if isinstance(value, str) else json.dumps(value))}")

    def show(self) -> None:
        """The settings, then the conversation: its size, then each message as role: "text"
        (the text quoted, newlines as \\n, so that one message is one line)."""
        self.show_settings()
        n = len(self.history)
        turns = len(split_turns(self.history)[1])
        size = f", {len(self._prompt_ids(self.history))} tokens of the context's {self.model.n_ctx}" if n else ""
        print(f"{n} message{'' if n == 1 else 's'} ({turns} turn{'' if turns == 1 else 's'}{size})")
        for message in self.history:
            print(f"  {message['role']}: {json.dumps(message['content'], ensure_ascii=False)}")

    # replies

    def reply(self, text: str) -> None:
        """Send a user message and stream the reply; the conversation is trimmed to fit the
        context first (and left as it was if the message cannot fit at all)."""
        fitted = self._fit(self.history + [{"role": "user", "content": text}])
        if fitted is None:
            return
        kept, ids = fitted
        reply = self._stream(ids)
        # the trimmed conversation becomes the history only now: a failed generation leaves it as it was
        self.history = kept + [{"role": "assistant", "content": reply}]

    def _fit(self, candidate: list):
        """(messages kept, prompt ids) with the oldest turns dropped as the context needs, saying
        so; None (said too) when the newest message does not fit even alone."""
        model = self.model
        # room kept for the reply: all of -n, unless that is more than a quarter of the context
        reply_room = max(1, min(self.max_tokens, model.n_ctx // 4))
        fitted = fit_history(candidate, self._prompt_ids, model.n_ctx, reply_room)
        if fitted is None:
            system = [m for m in candidate if m["role"] == "system"]
            needed = len(self._prompt_ids(system + candidate[-1:]))
            say(f"message not sent: it needs {needed} tokens{' with the system prompt' if system else ''}, "
                f"more than the context of {model.n_ctx} holds with room for a reply (shorten it, or start "
                f"again with a larger --ctx-size); the conversation is unchanged")
            return None
        kept, dropped, ids = fitted
        if dropped:
            stays = " (the system prompt stays)" if kept[0]["role"] == "system" else ""
            say(f"the conversation outgrew the context of {model.n_ctx} tokens: dropped the oldest "
                f"{dropped} turn{'s' if dropped > 1 else ''}{stays}")
        return kept, ids

    def _prompt_ids(self, messages: list) -> list:
        return self.model.tokenize(self.model.render_chat(messages))

    def _stream(self, ids: list) -> str:
        """Generate the reply to the prompt ids, streaming it to stdout; its text. Ctrl-C stops
        it (what came so far is kept); the context filling up is reported."""
        model = self.model
        pieces = model.generate(ids, max_tokens=self.max_tokens, stream=True, speculative=self.speculative,
                                **self.settings, **self.constraint)
        reply, stopped = [], False
        try:
            for piece in pieces:
                reply.append(piece)
                sys.stdout.write(piece)
                sys.stdout.flush()
        except KeyboardInterrupt:
            sys.stdout.write(" [stopped]")
            stopped = True
        finally:
            pieces.close()                  # a stream stopped between pieces lets go of the model
        sys.stdout.write("\n")
        sys.stdout.flush()
        if not stopped and model.last_result is not None:
            report_context_limit(model.last_result, self.max_tokens, model.n_ctx)
        return "".join(reply)


def run_chat(model, settings: dict, max_tokens: int, system: str | None, constraint: dict | None = None,
             speculative: str | None = None) -> int:
    """The loop: read a message, run it as a command or send it; 0 at /bye or end of input."""
    session = ChatSession(model, settings, max_tokens, system, constraint, speculative)
    at_exit = enable_line_editing()
    if sys.stdin.isatty():
        say("/help for commands, /bye or Ctrl-D to quit, Ctrl-C stops a reply, \"\"\" for multi-line")
    try:
        for text, literal in stdin_messages():
            if not literal and text.lstrip().startswith("/"):
                if not session.command(text):
                    return 0
                continue
            if not text.strip():
                continue
            try:
                session.reply(text)
            except IgnisError as e:         # e.g. a template that rejects the conversation
                say(f"error: {e}")
        return 0
    finally:
        at_exit()


EPILOG = ("In the chat: /help lists the commands (/set temperature 0.7, /set system TEXT, /clear, /bye, "
          "...); a line starting with \"\"\" opens a multi-line message, one ending with \"\"\" closes it, "
          "and a paste is one message. Piped in (not a terminal), each \"\"\" block is one message, a line "
          "starting with / a command, and the other lines together one message. When the conversation would "
          "outgrow the context, its oldest turns are dropped before the reply (the system prompt stays).")


def chat_args(p) -> None:
    p.epilog = EPILOG
    model_flag(p)
    sampling_flags(p, n_predict=512, n_help="most tokens per reply; a reply also ends at the context limit, "
                                            "and /set max_tokens N changes it")
    constraint_flags(p)
    p.add_argument("--system", help="system prompt")


def cmd_chat(args) -> int:
    error = spec_error(args)
    if error:
        return usage_error("chat", error)
    model = load(args)
    rules = constraint(args)
    if rules:
        model.constraint(**rules)      # a bad schema, regex or grammar: one line before the chat starts
    budget = model.n_ctx if args.n_predict is None else args.n_predict     # -1: each reply until the context ends it
    return run_chat(model, sampling(args), budget, args.system, rules, args.spec)
