"""The public Model: load a GGUF, tokenize, run prompts, generate, chat.

Shaped like llama-cpp-python where that fits. One Model serves one caller at a time
(a lock serialises concurrent calls); the KV cache keeps the longest prefix shared
with the next prompt, so chat turns only prefill what is new."""
import inspect
import queue
import threading
from typing import Iterator

import numpy as np

from ignis.args import INT64_MAX, check_bool, check_ids, check_int, check_path, check_str, describe
from ignis.errors import ArgumentError, ArgumentTypeError, ContextOverflowError, IgnisError, TokenizerError
from ignis.gguf import GGUFFile
from ignis.models import config_from_file
from ignis.models.common import MAX_CONTEXT
from ignis.passes.pipeline import PASSES
from ignis.runtime.chat import ChatTemplate, default_template
from ignis.runtime.engine import MAX_BATCH, Engine, default_threads
from ignis.runtime.generate import GenerationResult, generate_pieces
from ignis.runtime.sampling import SamplingParams
from ignis.runtime.scheduler import END_OF_STREAM, Scheduler
from ignis.runtime.validate import check_finite_weights
from ignis.tokenizer import Tokenizer

DEFAULT_CTX = 4096


def _check_passes(passes):
    """None (the default pipeline), a comma-separated str or a list/tuple of pass names."""
    if passes is None:
        return None
    if isinstance(passes, str):
        names = [p.strip() for p in passes.split(",") if p.strip()]
    elif isinstance(passes, (list, tuple)):
        names = [check_str(f"passes[{i}]", name) for i, name in enumerate(passes)]
    else:
        raise ArgumentTypeError(f"passes must be None, a comma-separated str or a list of pass names, "
                                f"got {describe(passes)}")
    for i, name in enumerate(names):
        if name not in PASSES:
            raise ArgumentError(f"passes[{i}]: unknown pass {describe(name)}; known passes: {', '.join(PASSES)}")
    return tuple(names)


def _check_messages(messages) -> list:
    """A chat: a list (or tuple) of dicts, each with str 'role' and 'content'."""
    if not isinstance(messages, (list, tuple)):
        raise ArgumentTypeError(f"messages must be a list of {{'role': str, 'content': str}} dicts, "
                                f"got {describe(messages)}")
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise ArgumentTypeError(f"messages[{i}] must be a dict with 'role' and 'content', got {describe(m)}")
        for key in ("role", "content"):
            if key not in m:
                raise ArgumentError(f"messages[{i}] has no {key!r} (a message is a dict with 'role' and 'content')")
            if key == "content" and m[key] is None and m.get("tool_calls"):    # an assistant's calls alone
                continue
            check_str(f"messages[{i}][{key!r}]", m[key])
    return list(messages)


def _check_stop(stop) -> list:
    """None, one stop string or a list/tuple of them; empty strings stop nothing."""
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop] if stop else []
    if not isinstance(stop, (list, tuple)):
        raise ArgumentTypeError(f"stop must be None, a str or a list of str, got {describe(stop)}")
    return [s for i, s in enumerate(stop) if check_str(f"stop[{i}]", s)]


class Model:
    def __init__(self, path=None, n_ctx: int | None = None, threads: int | None = None, passes=None):
        # arguments are checked before anything is fetched or opened
        if path is not None:
            path = check_path("path", path)
        if n_ctx is not None:
            n_ctx = check_int("n_ctx", n_ctx, 1, MAX_CONTEXT)
        if threads is not None:
            threads = check_int("threads", threads, 1, INT64_MAX)
            most = max(64, 4 * default_threads())
            if threads > most:
                raise ArgumentError(f"threads = {threads} is more than {most} (4x the {default_threads()} "
                                    "available cores, at least 64)")
        passes = _check_passes(passes)
        from ignis.hub import pull, resolve
        # a file path, else a catalogue name (pulled on first use), else the default model
        path = pull(progress=True) if path is None else resolve(path, progress=True)
        self.path = str(path)
        self.gguf = GGUFFile(self.path)
        try:   # everything about the file is checked before any kernel runs
            self.config = config_from_file(self.gguf)
            try:
                self.tokenizer = Tokenizer.from_metadata(self.gguf.metadata)
            except TokenizerError as exc:
                raise TokenizerError(f"{self.path}: {exc}") from None
            check_finite_weights(self.gguf, self.config.tensor_shapes())
            if not self.config.tied_output:
                # the check paged the whole embedding table in; decode reads one row per token
                self.gguf.release("token_embd.weight")
            limit = int(self.config.context_length)
            if n_ctx is None:
                n_ctx = min(limit, DEFAULT_CTX)
            if threads is None:
                threads = default_threads()
            self.n_ctx = n_ctx
            self.threads = threads
            try:
                self.engine = Engine(self.gguf, self.config, n_ctx, threads, passes)
            except MemoryError:
                c = self.config
                gib = 2 * c.n_layers * n_ctx * c.n_kv_heads * c.head_dim * 2 / 2**30
                raise IgnisError(f"n_ctx = {n_ctx}: the KV cache needs {gib:.1f} GiB, more memory than "
                                 "there is (lower n_ctx / --ctx)") from None
        except IgnisError:
            self.gguf.close()
            raise
        self._tokens = []           # the ids whose keys and values are in the KV cache
        self._schedulers = []
        self._batch_scheduler = None
        # a full KV pool first gives up the prefixes schedulers keep of finished requests
        self.engine.reclaim = lambda: any(sched.evict_one() for sched in self._schedulers)
        self._lock = threading.RLock()
        self._template = None
        self.last_prompt_evaluated = 0
        self.last_result = None

    # -- context ------------------------------------------------------------------------

    @property
    def n_past(self) -> int:
        return len(self._tokens)

    @property
    def n_vocab(self) -> int:
        return self.config.vocab

    def reset(self) -> None:
        """Forget the context (the KV cache contents become unreachable)."""
        with self._lock:
            self._tokens = []

    def eval(self, ids) -> np.ndarray:
        """Append ids to the context; the last position's logits. The context grows only by
        what was actually computed, so an interrupt leaves it consistent."""
        return self._eval(check_ids("ids", ids, self.n_vocab))

    def _eval(self, ids: list) -> np.ndarray:
        if not ids:
            raise IgnisError("nothing to evaluate: empty token list")
        with self._lock:      # one caller at a time: plans and KV cache are shared state
            if self.engine is None:
                raise IgnisError(f"{self.path}: the model is closed")
            start = len(self._tokens)
            logits = None
            for lo in range(0, len(ids), MAX_BATCH):
                piece = ids[lo:lo + MAX_BATCH]
                logits = self.engine.forward(piece, start + lo)
                self._tokens.extend(piece)
            return logits

    def eval_prompt(self, ids) -> np.ndarray:
        """Evaluate a prompt, reusing the KV cache for the prefix it shares with the context."""
        return self._eval_prompt(check_ids("ids", ids, self.n_vocab))

    def _eval_prompt(self, ids: list) -> np.ndarray:
        if not ids:
            raise IgnisError("empty prompt: give at least one token")
        if len(ids) > self.n_ctx:
            raise ContextOverflowError(f"prompt of {len(ids)} tokens does not fit in the context of "
                                       f"{self.n_ctx} tokens (raise n_ctx / --ctx, or shorten the prompt)")
        with self._lock:
            keep = 0
            for a, b in zip(self._tokens, ids[:-1]):
                if a != b:
                    break
                keep += 1
            if keep and self.engine is not None:     # a sliding-window cache may not go back that far
                keep = self.engine.keepable(keep)
            del self._tokens[keep:]
            self.last_prompt_evaluated = len(ids) - keep
            return self._eval(ids[keep:])

    # -- tokens ---------------------------------------------------------------------------

    def tokenize(self, text: str, parse_special: bool = True) -> list:
        return self.tokenizer.encode(text, parse_special=parse_special)

    def detokenize(self, ids) -> str:
        return self.tokenizer.decode(check_ids("ids", ids, self.n_vocab))

    def _prompt_ids(self, prompt, name: str = "prompt") -> list:
        """Text (tokenized, special tokens parsed, BOS first where the vocabulary asks for it:
        Gemma 3) or token ids, as a list of ids."""
        if isinstance(prompt, str):
            ids, tok = self.tokenize(prompt), self.tokenizer
            if tok.add_bos and tok.bos_id is not None and ids[:1] != [tok.bos_id]:   # a chat template may have put it
                ids.insert(0, tok.bos_id)
            return ids
        return check_ids(name, prompt, self.n_vocab, expected="a str or a list of token ids")

    # -- scoring --------------------------------------------------------------------------

    def logits(self, ids) -> np.ndarray:
        """Teacher-forced logits [len(ids), n_vocab] (float32) from an empty context."""
        ids = self._prompt_ids(ids, "ids")
        if not ids:
            raise IgnisError("empty prompt: logits() needs at least one token")
        with self._lock:
            if self.engine is None:
                raise IgnisError(f"{self.path}: the model is closed")
            self._tokens = []
            if len(ids) > self.n_ctx:
                raise ContextOverflowError(f"{len(ids)} tokens do not fit in the context of {self.n_ctx}")
            out = self.engine.forward(ids, 0, all_logits=True)
            self._tokens = list(ids)
            return out

    def greedy_ids(self, prompt, n: int, stop_ids=None) -> list:
        """Up to n greedy token ids after the prompt (stops after an end-of-generation id)."""
        n = check_int("n", n, 0, INT64_MAX)
        if stop_ids is None:
            stop_ids = self.tokenizer.eot_ids
        else:
            if isinstance(stop_ids, (set, frozenset)):
                stop_ids = list(stop_ids)
            stop_ids = check_ids("stop_ids", stop_ids, self.n_vocab, expected="a list or set of token ids")
        ids = self._prompt_ids(prompt)
        stop_ids = set(stop_ids)
        with self._lock:
            logits = self._eval_prompt(ids)
            out = []
            while len(out) < n:
                t = int(np.argmax(logits))
                out.append(t)
                if t in stop_ids or self.n_past >= self.n_ctx:
                    break
                logits = self._eval([t])
            return out

    # -- generation -----------------------------------------------------------------------

    def generate(self, prompt, max_tokens: int = 128, temperature: float = 0.8, top_k: int = 40,
                 top_p: float = 0.95, min_p: float = 0.05, repeat_penalty: float = 1.0,
                 presence_penalty: float = 0.0, frequency_penalty: float = 0.0, seed=None,
                 stop=None, ignore_eos: bool = False, stream: bool = False, json_schema=None, regex=None,
                 grammar=None):
        """Complete a prompt (text with special tokens parsed, or a list of ids). Returns the
        text, or with stream=True an iterator of text pieces as they are generated.
        Structured output: at most one of json_schema (a dict or JSON text), regex (the whole
        output matches it) and grammar (Lark or llama.cpp GBNF text); generation then ends
        when the output is complete."""
        # every argument is checked here, before any work (and before a stream starts)
        ids, max_tokens, params, stops, ignore_eos = self._request(
            prompt, max_tokens, temperature, top_k, top_p, min_p, repeat_penalty, presence_penalty,
            frequency_penalty, seed, stop, ignore_eos)
        constraint = self.constraint(json_schema=json_schema, regex=regex, grammar=grammar)
        stream = check_bool("stream", stream)
        self.last_result = GenerationResult()
        pieces = self._locked_pieces(ids, max_tokens, params, stops, ignore_eos, self.last_result, constraint)
        return pieces if stream else "".join(pieces)

    def constraint(self, json_schema=None, regex=None, grammar=None):
        """The compiled constraint of at most one of json_schema, regex and grammar (None if
        none is given); a ConstraintError names what is wrong with a bad one."""
        from ignis.runtime.constraint import compile_constraint
        return compile_constraint(self.tokenizer, self.n_vocab, self.tokenizer.eot_ids, json_schema=json_schema,
                                  regex=regex, grammar=grammar)

    def _request(self, prompt, max_tokens, temperature, top_k, top_p, min_p, repeat_penalty, presence_penalty,
                 frequency_penalty, seed, stop, ignore_eos, name: str = "prompt") -> tuple:
        """One completion request, checked: (ids, max_tokens, SamplingParams, stops, ignore_eos)."""
        max_tokens = check_int("max_tokens", max_tokens, 0, INT64_MAX)
        params = SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                                repeat_penalty=repeat_penalty, presence_penalty=presence_penalty,
                                frequency_penalty=frequency_penalty, seed=seed)
        params.validate()
        stops = _check_stop(stop)
        ignore_eos = check_bool("ignore_eos", ignore_eos)
        ids = self._prompt_ids(prompt, name)
        if not ids:
            raise IgnisError(f"empty {name}: give some text or token ids")
        if len(ids) > self.n_ctx:
            raise ContextOverflowError(f"{name} of {len(ids)} tokens does not fit in the context of "
                                       f"{self.n_ctx} tokens (raise n_ctx / --ctx, or shorten the prompt)")
        return ids, max_tokens, params, stops, ignore_eos

    def generate_batch(self, prompts, max_tokens: int = 128, temperature: float = 0.8, top_k: int = 40,
                       top_p: float = 0.95, min_p: float = 0.05, repeat_penalty: float = 1.0,
                       presence_penalty: float = 0.0, frequency_penalty: float = 0.0, seed=None,
                       stop=None, ignore_eos: bool = False, stream: bool = False, json_schema=None, regex=None,
                       grammar=None):
        """Complete many prompts at once (continuous batching: one forward pass a step for all
        of them). Each prompt's text is what generate() gives it alone with the same settings
        (seed, json_schema, regex, grammar: one for every prompt, or a list of one per prompt,
        None for an unconstrained one). Returns the list of texts, or with stream=True an
        iterator of (index, piece) as pieces are generated."""
        if not isinstance(prompts, (list, tuple)):
            raise ArgumentTypeError(f"prompts must be a list of prompts (texts or token id lists), "
                                    f"got {describe(prompts)}")
        if not prompts:
            raise ArgumentError("prompts is empty: give at least one prompt")
        seeds = _per_prompt("seed", seed, len(prompts))
        schemas = _per_prompt("json_schema", json_schema, len(prompts))
        regexes = _per_prompt("regex", regex, len(prompts))
        grammars = _per_prompt("grammar", grammar, len(prompts))
        stream = check_bool("stream", stream)
        requests = [self._request(p, max_tokens, temperature, top_k, top_p, min_p, repeat_penalty,
                                  presence_penalty, frequency_penalty, s, stop, ignore_eos, f"prompts[{i}]")
                    for i, (p, s) in enumerate(zip(prompts, seeds))]
        compiled = {}     # one compilation per distinct constraint
        constraints = []
        for i, spec in enumerate(zip(schemas, regexes, grammars)):
            key = repr(spec)
            if key not in compiled:
                try:
                    compiled[key] = self.constraint(*spec)
                except IgnisError as exc:
                    raise type(exc)(f"prompts[{i}]: {exc}") from None
            constraints.append(compiled[key])
        sched = self._default_scheduler()
        events = queue.Queue() if stream else None
        handles = [sched.submit(ids, max_tokens=n, params=params, stop=stops, ignore_eos=eos, sink=events, tag=i,
                                constraint=c)
                   for i, ((ids, n, params, stops, eos), c) in enumerate(zip(requests, constraints))]
        if not stream:
            return [h.text() for h in handles]
        return _merged(handles, events)

    def scheduler(self, max_batch: int = 16, step_tokens: int = 256):
        """A continuous-batching scheduler over this model (see ignis.runtime.scheduler):
        submit(...) returns a handle that streams pieces and can cancel()."""
        max_batch = check_int("max_batch", max_batch, 1, 4096)
        step_tokens = check_int("step_tokens", step_tokens, max_batch, 1 << 16)
        if self.engine is None:
            raise IgnisError(f"{self.path}: the model is closed")
        sched = Scheduler(self, max_batch, step_tokens)
        self._schedulers.append(sched)
        return sched

    def _default_scheduler(self):
        if self._batch_scheduler is None:
            self._batch_scheduler = self.scheduler()
        return self._batch_scheduler

    def _release_cached_prefix(self) -> bool:
        """Drop the KV cache this Model keeps of its last prompt (for the scheduler when the
        pool is full). True if it held any."""
        with self._lock:
            if not self._tokens or self.engine is None:
                return False
            self._tokens = []
            self.engine.kv.truncate(self.engine.seq, 0)
            return True

    def _locked_pieces(self, ids, max_tokens, params, stops, ignore_eos, result, constraint=None) -> Iterator[str]:
        with self._lock:
            if max_tokens == 0:
                return
            yield from generate_pieces(self, ids, max_tokens, params, stops,
                                       set(self.tokenizer.eot_ids), ignore_eos, result, constraint)

    def chat(self, messages, max_tokens: int = 512, stream: bool = False, response_format=None, tools=None,
             tool_choice=None, parallel_tool_calls=None, **kwargs):
        """Reply to a conversation (list of {"role", "content"}) using the file's chat template.
        Other keyword arguments are generate()'s settings (json_schema, regex and grammar
        too). response_format is OpenAI's: {"type": "json_object"} or {"type": "json_schema",
        "json_schema": {"schema": {...}}} (the same as json_schema=...).
        tools, tool_choice, parallel_tool_calls: OpenAI's (see ignis.runtime.tools); with
        them the reply is OpenAI's assistant message {"role", "content", "tool_calls"?}, and
        with stream=True an iterator of OpenAI's deltas."""
        unknown = sorted(set(kwargs) - _CHAT_SETTINGS)
        if unknown:
            raise ArgumentTypeError(f"chat() got an unexpected keyword argument {unknown[0]!r} "
                                    f"(it takes {', '.join(sorted(_CHAT_SETTINGS | {'response_format'}))})")
        from ignis.runtime.constraint import response_format_schema
        schema = response_format_schema(response_format)
        if schema is not None:
            if any(kwargs.get(k) is not None for k in ("json_schema", "regex", "grammar")):
                raise ArgumentError("give either response_format or one of json_schema, regex and grammar")
            kwargs["json_schema"] = schema
        if tools is not None or tool_choice is not None:
            from ignis.runtime.toolchat import chat_with_tools
            return chat_with_tools(self, _check_messages(messages), tools, tool_choice, parallel_tool_calls,
                                   max_tokens=max_tokens, stream=stream, **kwargs)
        return self.generate(self.render_chat(messages), max_tokens=max_tokens, stream=stream, **kwargs)

    def render_chat(self, messages, add_generation_prompt: bool = True) -> str:
        """The prompt of a conversation (messages may hold OpenAI's tool calls and results)."""
        from ignis.runtime.tools import render
        messages = _check_messages(messages)
        add_generation_prompt = check_bool("add_generation_prompt", add_generation_prompt)
        return render(self.chat_template(), messages, add_generation_prompt)

    def chat_template(self) -> ChatTemplate:
        """The file's chat template (or the default one of its vocabulary), parsed once."""
        if self._template is None:
            md = self.gguf.metadata
            tok = self.tokenizer
            source = md.get("tokenizer.chat_template") or default_template(tok.special_tokens)
            self._template = ChatTemplate(source,
                                          tok.decode([tok.bos_id]) if tok.bos_id is not None else "",
                                          tok.decode([tok.eos_id]) if tok.eos_id is not None else "")
        return self._template

    # -- lifetime -------------------------------------------------------------------------

    def close(self) -> None:
        for sched in self._schedulers:       # cancels their requests, stops their threads
            sched.close()
        with self._lock:      # waits for a generation in another thread to finish
            self.engine = None
            self.gguf.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _per_prompt(name: str, value, n: int) -> list:
    """A setting given once for every prompt, or as a list of one per prompt."""
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            plural = {"seed": "seeds", "json_schema": "schemas", "regex": "regexes", "grammar": "grammars"}[name]
            raise ArgumentError(f"{name}: {len(value)} {plural} for {n} prompts")
        return list(value)
    return [value] * n


def _merged(handles, events) -> Iterator[tuple]:
    """(index, piece) from every handle's stream, as they come; raises a request's error."""
    left = len(handles)
    while left:
        tag, piece = events.get()
        if piece is END_OF_STREAM:
            left -= 1
            if handles[tag].error is not None:
                raise handles[tag].error
            continue
        yield tag, piece


# the keyword arguments chat() passes on to generate()
_CHAT_SETTINGS = frozenset(inspect.signature(Model.generate).parameters) - {"self", "prompt", "max_tokens", "stream"}


def load(path=None, n_ctx: int | None = None, threads: int | None = None, passes=None) -> Model:
    """Open a GGUF model (the default model, fetched on first use, when path is None)."""
    return Model(path, n_ctx=n_ctx, threads=threads, passes=passes)
