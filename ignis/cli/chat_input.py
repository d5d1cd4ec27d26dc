"""Reading `ignis chat`'s input a message at a time: one line, a `\"\"\"` block or a bracketed
paste; readline's editing and history on a terminal."""
import sys

BLOCK = '"""'                                         # opens and closes a multi-line message
PASTE_START, PASTE_END = "\x1b[200~", "\x1b[201~"     # a terminal's bracketed-paste markers


def read_message(read_line):
    """The next message as (text, literal): one line, a \"\"\" block or a bracketed paste
    (literal: never a command). read_line(prompt) returns a line without its newline and
    raises EOFError at the end of input (propagated when no message was started)."""
    line = read_line("> ")
    if PASTE_START in line:
        return _read_paste(line, read_line), True
    if line.lstrip().startswith(BLOCK):
        return _read_block(line.lstrip()[len(BLOCK):], read_line), True
    return line, "\n" in line        # readline's own bracketed paste gives one line with newlines


def _read_paste(line: str, read_line) -> str:
    """Lines up to the one holding the end marker, markers dropped (text typed after the paste
    on its last line belongs to the message). End of input ends the paste."""
    lines = [line]
    while PASTE_END not in lines[-1]:
        try:
            lines.append(read_line(""))
        except EOFError:
            break
    text = "\n".join(lines).replace(PASTE_START, "").replace(PASTE_END, "")
    return text.strip("\r\n")


def _read_block(first: str, read_line) -> str:
    """A \"\"\" block: from after the opening quotes to before the closing ones (on the first
    line too: \"\"\"one line\"\"\"). End of input ends the block: nothing typed is lost."""
    lines, line = [], first
    while True:
        stripped = line.rstrip()
        if stripped.endswith(BLOCK):
            lines.append(stripped[:-len(BLOCK)])
            break
        lines.append(line)
        try:
            line = read_line("... ")
        except EOFError:
            break
    return "\n".join(lines).strip("\r\n")


def typed_messages(read_line):
    """Messages typed on a terminal, as (text, literal): one read_message at a time; Ctrl-C while
    typing drops the line and the chat goes on; the end of input ends them."""
    while True:
        try:
            yield read_message(read_line)
        except EOFError:
            sys.stdout.write("\n")
            return
        except KeyboardInterrupt:
            sys.stdout.write("\n")


def piped_messages(read_line):
    """Messages from a pipe or a file, as (text, literal): each \"\"\" block or bracketed paste is
    one message, a line starting with `/` outside them is a command, and the lines between
    those are one message together (a piped text is one message, not one per line)."""
    pending = []

    def text_so_far():
        text = "\n".join(pending).strip("\r\n")
        pending.clear()
        return [(text, True)] if text.strip() else []

    while True:
        try:
            line = read_line("")
        except EOFError:
            break
        except KeyboardInterrupt:       # Ctrl-C between messages: the chat goes on
            sys.stdout.write("\n")
            continue
        stripped = line.lstrip()
        if PASTE_START in line:
            yield from text_so_far()
            yield _read_paste(line, read_line), True
        elif stripped.startswith(BLOCK):
            yield from text_so_far()
            yield _read_block(stripped[len(BLOCK):], read_line), True
        elif stripped.startswith("/"):
            yield from text_so_far()
            yield line, False
        else:
            pending.append(line)
    yield from text_so_far()


def stdin_messages():
    """The chat's messages from stdin: typed (a terminal) or piped."""
    read_line = stdin_reader()
    return typed_messages(read_line) if sys.stdin.isatty() else piped_messages(read_line)


def stdin_reader():
    """read_line for stdin: input() with its prompt on a terminal, plain lines (no prompt) from a
    pipe or a file."""
    if sys.stdin.isatty():
        return input

    def read_line(prompt: str) -> str:
        line = sys.stdin.readline()
        if not line:
            raise EOFError
        return line[:-1] if line.endswith("\n") else line
    return read_line


def enable_line_editing():
    """On a terminal: readline's editing and history (kept in <cache>/chat_history, the cache
    of `ignis pull`) and bracketed paste. Returns what to call at exit (saves the history,
    turns paste mode off). Without readline, or not on a terminal: plain input."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        return lambda: None
    try:
        import readline
    except ImportError:                  # e.g. a Python built without it: still a working chat
        return _raw_bracketed_paste()
    from ignis.hub import cache_dir
    path = cache_dir() / "chat_history"
    try:
        readline.read_history_file(str(path))
    except OSError:                      # no history yet, or unreadable: start empty
        pass
    readline.set_history_length(1000)
    if "libedit" not in (readline.__doc__ or ""):
        # GNU readline (8.1+ does this already) brackets pastes and hands back one line
        readline.parse_and_bind("set enable-bracketed-paste on")

    def save():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            readline.write_history_file(str(path))
        except OSError:                  # a read-only cache: the chat itself did not fail
            pass
    return save


def _raw_bracketed_paste():
    """Ask the terminal to bracket pastes (read_message joins them) when readline is missing."""
    sys.stdout.write("\x1b[?2004h")
    sys.stdout.flush()

    def off():
        sys.stdout.write("\x1b[?2004l")
        sys.stdout.flush()
    return off
