"""The generation loop: prompt ids → sampled ids → streamed text, with stop strings,
end-of-generation tokens and a token budget. Works on anything with `eval(ids) -> logits`
(the last position's logits after appending ids to the context) and `n_ctx`/`n_past`."""
import time
from dataclasses import dataclass, field
from typing import Iterator

from ignis.runtime.sampling import Sampler, SamplingParams


@dataclass
class GenerationResult:
    text: str = ""
    tokens: list = field(default_factory=list)
    finish_reason: str = "length"   # "stop" (eog token or stop string) or "length"
    prompt_tokens: int = 0          # tokens actually evaluated for the prompt (after cache reuse)
    prompt_seconds: float = 0.0
    decode_tokens: int = 0          # single-token forward passes after the prompt
    decode_seconds: float = 0.0


def _stop_cut(text: str, stops: list) -> int:
    """Index where the earliest stop string begins in text, or -1."""
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(hits) if hits else -1


def _held_back(text: str, stops: list) -> int:
    """How many trailing characters could still grow into a stop string (so are not yet safe to emit)."""
    keep = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:n]):
                keep = max(keep, n)
                break
    return keep


def generate_pieces(session, prompt_ids: list, max_tokens: int, params: SamplingParams,
                    stop: list, eog_ids: set, ignore_eos: bool, result: GenerationResult) -> Iterator[str]:
    """Yield text pieces as they become final; fill `result` as a side channel."""
    sampler = Sampler(params)
    detok = session.tokenizer.stream()
    history = list(prompt_ids)
    t0 = time.perf_counter()
    logits = session.eval_prompt(prompt_ids)
    result.prompt_seconds = time.perf_counter() - t0
    result.prompt_tokens = session.last_prompt_evaluated
    pending = ""          # decoded text not yet emitted (may hold a stop-string prefix)
    hit_stop_string = False
    result.finish_reason = "length"
    while len(result.tokens) < max_tokens:
        token = sampler(logits, history)
        if token in eog_ids and not ignore_eos:
            result.finish_reason = "stop"
            break
        result.tokens.append(token)
        history.append(token)
        pending += detok.push(token)
        cut = _stop_cut(pending, stop) if stop else -1
        if cut >= 0:
            pending = pending[:cut]
            result.finish_reason = "stop"
            hit_stop_string = True
            break
        safe = len(pending) - (_held_back(pending, stop) if stop else 0)
        if safe > 0:
            result.text += pending[:safe]
            yield pending[:safe]
            pending = pending[safe:]
        if len(result.tokens) >= max_tokens or session.n_past >= session.n_ctx:
            break
        t0 = time.perf_counter()
        logits = session.eval([token])
        result.decode_seconds += time.perf_counter() - t0
        result.decode_tokens += 1
    if not hit_stop_string:
        pending += detok.flush()     # incomplete UTF-8 at the end becomes one U+FFFD
    if stop:
        cut = _stop_cut(pending, stop)
        if cut >= 0:
            pending, result.finish_reason = pending[:cut], "stop"
    if pending:
        result.text += pending
        yield pending
