"""The public Model: load a GGUF, tokenize, score, generate, chat.

Shaped like llama-cpp-python where that fits. Every call that runs the model makes a
validated Request (Model.request) and submits it to the engine loop (the model's own
Scheduler, ignis.runtime.scheduler): nothing else runs a forward pass. The KV block pool
keeps finished requests' full blocks as a prefix cache, so a chat turn only computes what
is new; eval() keeps a context between calls (a session)."""
import inspect
import queue
import threading
from typing import Iterator

import numpy as np

from ignis.args import INT64_MAX, check_bool, check_ids, check_int, check_path, check_str, describe
from ignis.errors import ArgumentError, ArgumentTypeError, IgnisError, TokenizerError
from ignis.gguf import GGUFFile
from ignis.models import config_from_file
from ignis.models.common import MAX_CONTEXT
from ignis.passes.pipeline import PASSES
from ignis.runtime.chat import ChatTemplate, default_template
from ignis.runtime.engine import MAX_STEP_TOKENS, Engine, default_threads
from ignis.runtime.request import Request, Session, make_request
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


class Model:
    def __init__(self, path=None, n_ctx: int | None = None, threads: int | None = None, passes=None,
                 draft_model=None):
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
        if draft_model is not None:
            draft_model = check_path("draft_model", draft_model)
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
            self.engine = Engine(self.gguf, self.config, n_ctx, threads, passes)
        except IgnisError:
            self.gguf.close()
            raise
        self._schedulers = []
        self._loop = None               # the default scheduler (made on first use)
        self._lock = threading.RLock()  # the engine: one step at a time, whichever scheduler runs it
        self._session = Session()       # eval()'s context
        self._session_lock = threading.Lock()
        self._template = None
        self.last_prompt_evaluated = 0
        self.last_result = None
        self.draft = None               # speculative="draft": ignis.runtime.draft_model.DraftModel
        if draft_model is not None:
            from ignis.runtime.draft_model import DraftModel
            try:
                draft = Model(draft_model, n_ctx=self.n_ctx, threads=self.threads)
            except BaseException:
                self.close()
                raise
            try:
                self.draft = DraftModel(self, draft)     # checks the vocabularies
            except BaseException:
                draft.close()
                self.close()
                raise

    # -- the engine loop ------------------------------------------------------------------

    def scheduler(self, max_batch: int = 16, step_tokens: int = 256):
        """A continuous-batching scheduler over this model (see ignis.runtime.scheduler):
        submit(model.request(...)) returns a handle that streams pieces and can cancel()."""
        max_batch = check_int("max_batch", max_batch, 1, 4096)
        step_tokens = check_int("step_tokens", step_tokens, max_batch, 1 << 16)
        if self.engine is None:
            raise IgnisError(f"{self.path}: the model is closed")
        sched = Scheduler(self, max_batch, step_tokens)
        self._schedulers.append(sched)
        return sched

    def _default_scheduler(self):
        if self.engine is None:
            raise IgnisError(f"{self.path}: the model is closed")
        if self._loop is None:
            self._loop = self.scheduler(max_batch=16, step_tokens=MAX_STEP_TOKENS)
        return self._loop

    def clear_prefix_cache(self) -> None:
        """Forget every cached KV block (for measurements that must compute every prompt)."""
        with self._lock:
            if self.engine is not None:
                self.engine.kv.clear_cache()

    def _run(self, request: Request):
        """Submit to the default scheduler and wait: the handle, done (raises its error)."""
        handle = self._default_scheduler().submit(request)
        handle.wait()
        return handle

    # -- requests -------------------------------------------------------------------------

    def request(self, prompt, max_tokens: int = 128, temperature: float = 0.8, top_k: int = 40,
                top_p: float = 0.95, min_p: float = 0.05, repeat_penalty: float = 1.0,
                presence_penalty: float = 0.0, frequency_penalty: float = 0.0, seed=None,
                stop=None, ignore_eos: bool = False, n: int = 1, logprobs: int | None = None,
                json_schema=None, regex=None, grammar=None, constraint=None, speculative=None,
                logit_bias=None, name: str = "prompt") -> Request:
        """A validated, immutable Request for Scheduler.submit: the prompt (text, special
        tokens parsed, or token ids, each checked against the vocabulary), generate()'s
        settings, n completions, logprobs=N (per sampled token its log-probability and the
        N most likely), and at most one constraint (json_schema, regex, grammar, or an
        already compiled `constraint`), and speculative="ngram" to decode with prompt-lookup
        drafts verified exactly (the same tokens, fewer steps), or "draft" with the draft
        model's (load(..., draft_model=...)). logit_bias: {token id: finite bias} added to those
        logits before any other filter (OpenAI's and llama.cpp's order; -100 all but bans). Every
        check happens here, with a typed one-line error."""
        if speculative == "draft" and self.draft is None:
            raise ArgumentError("speculative=\"draft\" needs a draft model: load the model with "
                                "ignis.load(path, draft_model=NAME_OR_PATH) (--spec draft -md MODEL)")
        params = SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                                repeat_penalty=repeat_penalty, presence_penalty=presence_penalty,
                                frequency_penalty=frequency_penalty, seed=seed, logit_bias=logit_bias)
        if constraint is None:
            constraint = self.constraint(json_schema=json_schema, regex=regex, grammar=grammar)
        elif any(x is not None for x in (json_schema, regex, grammar)):
            raise ArgumentError("give either a compiled constraint or one of json_schema, regex and grammar")
        return make_request(self._prompt_ids(prompt, name), n_ctx=self.n_ctx, vocab=self.n_vocab,
                            max_tokens=max_tokens, params=params, stop=stop, ignore_eos=ignore_eos, n=n,
                            logprobs=logprobs, constraint=constraint, end_ids=self.tokenizer.eot_ids,
                            speculative=speculative, name=name)

    def _score(self, ids: list, rows: str, session=None, name: str = "ids") -> Request:
        return make_request(ids, n_ctx=self.n_ctx, vocab=self.n_vocab, max_tokens=0, params=SamplingParams(),
                            stop=None, ignore_eos=False, rows=rows, session=session, name=name)

    # -- context (a session kept between calls) --------------------------------------------

    @property
    def n_past(self) -> int:
        return len(self._session.tokens)

    @property
    def n_vocab(self) -> int:
        return self.config.vocab

    def reset(self) -> None:
        """Forget the context (its KV blocks stay in the prefix cache)."""
        with self._session_lock:
            self._session.tokens = []

    def eval(self, ids) -> np.ndarray:
        """Append ids to the context; the last position's logits."""
        ids = check_ids("ids", ids, self.n_vocab)
        if not ids:
            raise IgnisError("nothing to evaluate: empty token list")
        with self._session_lock:
            return self._eval_session(self._session.tokens + ids)

    def eval_prompt(self, ids) -> np.ndarray:
        """Make ids the context (what it shares with the current one is not recomputed); the
        last position's logits."""
        ids = check_ids("ids", ids, self.n_vocab)
        if not ids:
            raise IgnisError("empty prompt: give at least one token")
        with self._session_lock:
            return self._eval_session(ids)

    def _eval_session(self, ids: list) -> np.ndarray:
        handle = self._run(self._score(ids, "last", self._session))
        self.last_prompt_evaluated = handle.result.prompt_tokens
        return handle.logits

    # -- embeddings -----------------------------------------------------------------------

    def embed(self, texts, pooling=None, normalize: bool = True) -> np.ndarray:
        """Embeddings, float32 [n inputs, width]: texts is a str, a list of token ids (one
        input each), or a list of them. Each is the pooled final-normed hidden state of its
        tokens (pooling "mean", "last" or "cls" = the first token; None: the file's
        pooling_type, else mean), unit L2 norm with normalize. Runs in the engine loop."""
        from ignis.runtime.embedding import embed
        return embed(self, texts, pooling, normalize)

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
        """Teacher-forced logits [len(ids), n_vocab] (float32), every position computed."""
        ids = self._prompt_ids(ids, "ids")
        if not ids:
            raise IgnisError("empty prompt: logits() needs at least one token")
        return self._run(self._score(ids, "all")).logits

    def greedy_ids(self, prompt, n: int, stop_ids=None) -> list:
        """Up to n greedy token ids after the prompt (stops after an end-of-generation id,
        which is included)."""
        n = check_int("n", n, 0, INT64_MAX)
        if stop_ids is None:
            stop_ids = self.tokenizer.eot_ids
        else:
            if isinstance(stop_ids, (set, frozenset)):
                stop_ids = list(stop_ids)
            stop_ids = check_ids("stop_ids", stop_ids, self.n_vocab, expected="a list or set of token ids")
        request = make_request(self._prompt_ids(prompt), n_ctx=self.n_ctx, vocab=self.n_vocab, max_tokens=n,
                               params=SamplingParams(temperature=0.0), stop=None, ignore_eos=False,
                               end_ids=stop_ids, keep_end=True)
        result = self._run(request).result
        return result.tokens + ([] if result.end_token is None else [result.end_token])

    # -- generation -----------------------------------------------------------------------

    def generate(self, prompt, max_tokens: int = 128, temperature: float = 0.8, top_k: int = 40,
                 top_p: float = 0.95, min_p: float = 0.05, repeat_penalty: float = 1.0,
                 presence_penalty: float = 0.0, frequency_penalty: float = 0.0, seed=None,
                 stop=None, ignore_eos: bool = False, stream: bool = False, json_schema=None, regex=None,
                 grammar=None, speculative=None, logit_bias=None):
        """Complete a prompt (text with special tokens parsed, or a list of ids). Returns the
        text, or with stream=True an iterator of text pieces as they are generated (closing
        it early cancels the request). Structured output: at most one of json_schema (a dict
        or JSON text), regex (the whole output matches it) and grammar (Lark or llama.cpp
        GBNF text); generation then ends when the output is complete. speculative="ngram":
        prompt-lookup drafts verified exactly (the text is the one without it); "draft": the
        draft model's drafts (load(..., draft_model=...)), as exact."""
        # every argument is checked here, before any work (and before a stream starts)
        request = self.request(prompt, max_tokens, temperature, top_k, top_p, min_p, repeat_penalty,
                               presence_penalty, frequency_penalty, seed, stop, ignore_eos,
                               json_schema=json_schema, regex=regex, grammar=grammar, speculative=speculative,
                               logit_bias=logit_bias)
        stream = check_bool("stream", stream)
        handle = self._default_scheduler().submit(request)
        try:
            self.last_result = handle.result
            return iter(handle) if stream else handle.text()
        except BaseException:       # Ctrl-C before the caller has the stream: nobody will read it
            handle.cancel()
            raise

    def constraint(self, json_schema=None, regex=None, grammar=None):
        """The compiled constraint of at most one of json_schema, regex and grammar (None if
        none is given); a ConstraintError names what is wrong with a bad one."""
        from ignis.runtime.constraint import compile_constraint
        return compile_constraint(self.tokenizer, self.n_vocab, self.tokenizer.eot_ids, json_schema=json_schema,
                                  regex=regex, grammar=grammar)

    def generate_batch(self, prompts, max_tokens: int = 128, temperature: float = 0.8, top_k: int = 40,
                       top_p: float = 0.95, min_p: float = 0.05, repeat_penalty: float = 1.0,
                       presence_penalty: float = 0.0, frequency_penalty: float = 0.0, seed=None,
                       stop=None, ignore_eos: bool = False, stream: bool = False, json_schema=None, regex=None,
                       grammar=None, speculative=None, logit_bias=None):
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
        compiled = {}     # one compilation per distinct constraint
        requests = []
        for i, (p, s, spec) in enumerate(zip(prompts, seeds, zip(schemas, regexes, grammars))):
            key = repr(spec)
            if key not in compiled:
                try:
                    compiled[key] = self.constraint(*spec)
                except IgnisError as exc:
                    raise type(exc)(f"prompts[{i}]: {exc}") from None
            requests.append(self.request(p, max_tokens, temperature, top_k, top_p, min_p, repeat_penalty,
                                         presence_penalty, frequency_penalty, s, stop, ignore_eos,
                                         constraint=compiled[key], speculative=speculative, logit_bias=logit_bias,
                                         name=f"prompts[{i}]"))
        sched = self._default_scheduler()
        events = queue.SimpleQueue() if stream else None     # signal-atomic (runtime/handle.py)
        handles = sched.submit_many(requests, sink=events, tags=range(len(requests)))
        if not stream:
            return [h.text() for h in handles]
        return _merged(handles, events)

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
        with self._lock:      # waits for a step in progress
            self.engine = None
            self.gguf.close()
        if self.draft is not None:
            self.draft.close()

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
    """(index, piece) from every handle's stream, as they come; raises a request's error.
    Closing it early cancels the requests still running."""
    left = len(handles)
    try:
        while left:
            tag, piece = events.get()
            if piece is END_OF_STREAM:
                left -= 1
                if handles[tag].error is not None:
                    raise handles[tag].error
                continue
            yield tag, piece
    finally:
        for h in handles:
            if not h.done:
                h.cancel()


# the keyword arguments chat() passes on to generate()
_CHAT_SETTINGS = frozenset(inspect.signature(Model.generate).parameters) - {"self", "prompt", "max_tokens", "stream"}


def load(path=None, n_ctx: int | None = None, threads: int | None = None, passes=None, draft_model=None) -> Model:
    """Open a GGUF model (the default model, fetched on first use, when path is None);
    draft_model (a file or catalogue name sharing the vocabulary) drafts for speculative="draft"."""
    return Model(path, n_ctx=n_ctx, threads=threads, passes=passes, draft_model=draft_model)
