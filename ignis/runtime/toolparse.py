"""A reply with tool calls, parsed back into OpenAI's shapes, whole or as it streams.

`CallParser.feed(piece)` takes the generated text as it comes and returns OpenAI's deltas:
{"content": text} for text outside the calls, and for each call first
{"tool_calls": [{"index", "id", "type": "function", "function": {"name", "arguments": ""}}]}
once its name is known, then {"tool_calls": [{"index", "function": {"arguments": piece}}]}
as its arguments are written. The non-streamed message is built by the same parser, so a
stream's deltas always reassemble to the message: content is the text before the first
call (None when there is none), each call's arguments the exact JSON text the model wrote.

Text that may still turn out to be the start of a call marker, and whitespace before a
call, are held back until the next piece tells which it is."""
from __future__ import annotations

import re
import uuid

from ignis.runtime.tools import CLOSE, OPEN

_HEAD = re.compile(r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"arguments"\s*:\s*')


def new_call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


def _held_suffix(text: str, marker: str) -> int:
    """Length of the longest end of text that is a proper start of marker."""
    for k in range(min(len(text), len(marker) - 1), 0, -1):
        if marker.startswith(text[-k:]):
            return k
    return 0


class _ValueScanner:
    """Finds where one JSON value ends in text given piece by piece (strings, escapes and
    nesting followed; the value is valid JSON: the constraint made it so)."""

    def __init__(self):
        self.depth, self.in_string, self.escaped, self.started = 0, False, False, False

    def scan(self, text: str) -> int | None:
        """The offset just past the value's end in text, or None if it goes on."""
        for k, c in enumerate(text):
            if not self.started:
                if c.isspace():
                    continue
                self.started = True
            if self.in_string:
                if self.escaped:
                    self.escaped = False
                elif c == "\\":
                    self.escaped = True
                elif c == '"':
                    self.in_string = False
                    if self.depth == 0:
                        return k + 1
            elif c in "{[":
                self.depth += 1
            elif c in "}]":
                self.depth -= 1
                if self.depth <= 0:
                    return k + 1
            elif c == '"':
                self.in_string = True
            elif self.depth == 0 and (c.isspace() or c in ",}"):
                return k              # the end of a number, true, false or null
        return None


class CallParser:
    """One choice's text -> content and tool calls (see the module's docstring)."""

    def __init__(self, bare: bool = True):
        self.mode = "text"            # text | head | arguments | tail
        self.buffer = ""              # text not yet accounted for
        self.raw = ""                 # everything fed
        # a reply that opens with "{" is a bare call (no markers): small models write their
        # calls so, and the grammar then holds them to a call's shape
        self.bare_ok = bare
        self.in_bare = False          # the call being read has no markers
        self.content = ""             # text outside the calls, as emitted
        self.held = ""                # whitespace held back before a possible call
        self.calls = []               # [{"id", "type", "function": {"name", "arguments"}}]
        self.complete = 0             # calls whose closing marker was seen
        self.scanner = None

    # -- streaming ---------------------------------------------------------------------

    def feed(self, piece: str) -> list:
        self.buffer += piece
        self.raw += piece
        out = []
        progressed = True
        while progressed and self.buffer:
            progressed = getattr(self, "_" + self.mode)(out)
        return _merged(out)

    def finish(self) -> list:
        """The deltas of whatever is still held back (the output has ended)."""
        out = []
        if self.mode == "text":
            text = self.held + self.buffer
            if text and not self.calls:
                self._emit(out, text)
            elif text.strip() and not OPEN.startswith(text.strip()):    # not a next call cut short
                self._emit(out, text)
        self.held, self.buffer = "", ""
        return _merged(out)

    def _emit(self, out: list, text: str) -> None:
        if text:
            self.content += text
            out.append({"content": text})

    def _text(self, out: list) -> bool:
        if self.bare_ok and not self.content:
            lead = self.buffer.lstrip()
            if lead.startswith("{"):
                self.held, self.buffer, self.in_bare = "", lead, True
                self.mode = "head"
                return True
            if lead:
                self.bare_ok = False
        at = self.buffer.find(OPEN)
        if at >= 0:
            before = self.held + self.buffer[:at]
            if before.strip():
                # text before the call: its trailing whitespace is not content
                self._emit(out, before.rstrip())
            self.held = ""
            self.buffer = self.buffer[at + len(OPEN):]
            self.mode, self.in_bare, self.bare_ok = "head", False, False
            return True
        keep = _held_suffix(self.buffer, OPEN)
        text, self.buffer = self.buffer[:len(self.buffer) - keep], self.buffer[len(self.buffer) - keep:]
        stripped = text.rstrip()
        if stripped:
            self._emit(out, self.held + stripped)
            self.held = text[len(stripped):]
        else:
            self.held += text
        return False

    def _head(self, out: list) -> bool:
        m = _HEAD.match(self.buffer)
        if m is None:
            return False
        index = len(self.calls)
        call = {"id": new_call_id(), "type": "function", "function": {"name": m.group(1), "arguments": ""}}
        self.calls.append(call)
        out.append({"tool_calls": [{"index": index, "id": call["id"], "type": "function",
                                    "function": {"name": call["function"]["name"], "arguments": ""}}]})
        self.buffer = self.buffer[m.end():]
        self.scanner = _ValueScanner()
        self.mode = "arguments"
        return True

    def _arguments(self, out: list) -> bool:
        end = self.scanner.scan(self.buffer)
        piece = self.buffer if end is None else self.buffer[:end]
        if not self.calls[-1]["function"]["arguments"]:
            piece = piece.lstrip()
        if piece:
            self.calls[-1]["function"]["arguments"] += piece
            out.append({"tool_calls": [{"index": len(self.calls) - 1, "function": {"arguments": piece}}]})
        if end is None:
            self.buffer = ""
            return False
        self.buffer = self.buffer[end:]
        self.mode = "tail"
        return True

    def _tail(self, out: list) -> bool:
        end = "}" if self.in_bare else CLOSE       # a bare call ends with its object
        at = self.buffer.find(end)
        if at < 0:
            return False
        self.buffer = self.buffer[at + len(end):].lstrip()
        self.complete += 1
        self.mode = "text"
        return True

    # -- the whole reply ---------------------------------------------------------------

    def message(self) -> dict:
        """OpenAI's assistant message of the reply fed so far (finish() first)."""
        calls = self.calls[:self.complete]
        if not calls:               # no complete call (none, or one cut short): the text as written
            return {"role": "assistant", "content": self.raw}
        content = self.content if self.content.strip() else None
        message = {"role": "assistant", "content": content}
        if calls:
            message["tool_calls"] = calls
        return message

    def finish_reason(self, reason: str) -> str:
        """A reply that stopped after complete calls finished with "tool_calls"."""
        return "tool_calls" if reason == "stop" and self.complete else reason


def _merged(deltas: list) -> list:
    """Consecutive deltas of the same kind in one (fewer chunks)."""
    out = []
    for d in deltas:
        last = out[-1] if out else None
        if last and "content" in d and "content" in last:
            last["content"] += d["content"]
        elif (last and "tool_calls" in d and "tool_calls" in last and "id" not in d["tool_calls"][0]
              and "id" not in last["tool_calls"][0]
              and last["tool_calls"][0]["index"] == d["tool_calls"][0]["index"]):
            last["tool_calls"][0]["function"]["arguments"] += d["tool_calls"][0]["function"]["arguments"]
        else:
            out.append(d)
    return out


def parse_reply(text: str, bare: bool = True) -> tuple:
    """(message, parser) of a whole reply."""
    parser = CallParser(bare)
    parser.feed(text)
    parser.finish()
    return parser.message(), parser
