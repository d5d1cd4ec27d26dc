"""Encode throughput of ignis' tokenizer against Hugging Face `tokenizers`, same corpus, one run.

    python -m bench.tokenizer [--model PATH] [--mb 0.6] [--repeat 3]

Both tokenizers are built from the same GGUF vocabulary (HF's through fuzz.tokenizer's
reference builder, which reproduces the golden ids) and encode the same documents one
call each, single-threaded. Two figures each:

- warm: the corpus (>= 0.5 MB) mixes the texts in tests/data with generated prose and code,
  whose words repeat, after one warm-up pass; the best of --repeat passes counts. Most
  pre-tokens are then answered from the tokenizers' caches.
- cold: a second corpus of the same size in which (almost) no pre-token repeats: made-up
  words and CJK runs, each used once. Every pass starts from freshly built tokenizers
  (empty caches), so every pre-token goes through the BPE merge loop; the best of
  --repeat such passes counts.
`tokenizers` is a test-only dependency: pip install tokenizers.
"""
import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("RAYON_NUM_THREADS", "1")         # single-threaded HF, before it loads
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
if str(ROOT) not in sys.path:       # run as a script (python bench/tokenizer.py): find fuzz/
    sys.path.insert(0, str(ROOT))

_WORDS = ("the of and to in is that for it as with was on be by this are or from at an but not "
          "have which one all were we when your can there use each how their if will other about "
          "model token cache layer tensor graph memory kernel fusion buffer quantized inference "
          "résumé naïve café Zürich straße señor déjà façade").split()
_CJK = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处府队南给色光门即保治北造百规热领七海口东导器压志世金增争济阶油思术极交受联什认六共权收证改清己美再采转更单风切打白教速花带安场身车例真务具万每目至达走积示议声报斗完类八离华名确才科张信马节话米整空元况今集温传土许步群广石记需段研界拉林律叫且究观越织装影算低持音众书布复容儿须际商非验连断深难近矿千周委素技备半办青省列习响约支般史感劳便团往酸历市克何除消构府称太准精值号率族维划选标写存候毛亲快效斯院查江型眼王按格养易置派层片始却专状育厂京识适属圆包火住调满县局照参红细引听该铁价严"


def _prose(rng: random.Random, n_words: int) -> str:
    words = []
    for _ in range(n_words):
        word = rng.choice(_WORDS)
        if rng.random() < 0.08:
            word = word.capitalize()
        if rng.random() < 0.05:
            word += rng.choice(",.;:!?")
        words.append(word)
    return " ".join(words) + ".\n"


def _chinese(rng: random.Random, n_chars: int) -> str:
    return "".join(rng.choice(_CJK) + ("，" if rng.random() < 0.08 else "") for _ in range(n_chars)) + "。\n"


def _code(rng: random.Random, n_funcs: int) -> str:
    out = []
    for _ in range(n_funcs):
        name = "_".join(rng.choice(_WORDS[:60]) for _ in range(rng.randint(1, 3)))
        args = ", ".join(rng.choice(("x", "y", "self", "n", "items", "key=None", "*args", "**kwargs"))
                         for _ in range(rng.randint(0, 3)))
        out.append(f"def {name}({args}):\n")
        out.append(f'    """{_prose(rng, rng.randint(4, 12)).strip()}"""\n')
        for _ in range(rng.randint(1, 6)):
            indent = "    " * rng.randint(1, 3)
            value = rng.choice((str(rng.randint(0, 10 ** rng.randint(1, 6))), f"{rng.random():.4f}",
                                f"'{rng.choice(_WORDS)}'", f"[{rng.randint(0, 9)}, {rng.randint(0, 99)}]",
                                f"{rng.choice(_WORDS[:30])}({rng.choice(('x', 'n', ''))})"))
            out.append(f"{indent}{rng.choice(_WORDS[:40])}_{rng.randint(0, 99)} = {value}  # {rng.choice(_WORDS)}\n")
        out.append(f"    return {rng.choice(('x', 'None', 'n + 1', 'items[::-1]', '{}'))}\n\n")
    return "".join(out)


def corpus(min_bytes: int) -> list:
    """Documents: the tests/data texts, then generated prose, Chinese and code, repeated
    until the total reaches min_bytes (deterministic)."""
    docs = [json.loads(line)["text"] for line in (DATA / "tokenizer_public.jsonl").open()]
    logits = DATA / "logits_public.jsonl"
    if logits.exists():
        docs += [json.loads(line).get("text", "") for line in logits.open()]
    docs = [d for d in docs if d]
    rng = random.Random(1234)
    generated = []
    for _ in range(40):
        generated += [_prose(rng, rng.randint(50, 400)), _code(rng, rng.randint(1, 6)),
                      _chinese(rng, rng.randint(30, 200))]
    base = docs + generated
    out, size = [], 0
    while size < min_bytes:
        for doc in base:
            out.append(doc)
            size += len(doc.encode("utf-8"))
    return out


_ONSETS = ("b c d f g h j k l m n p r s t v w z br cr dr fl gr kl pl pr st str tr sh ch th qu "
           "sk sl sm sn sp sw ž č ß ñ").split()
_VOWELS = "a e i o u y ae ai au ea ee ie oo ou é è ê ö ü å ø à ï".split()
_CODAS = ["", "", "", "n", "r", "s", "l", "m", "x", "nd", "rt", "st", "ck", "ng", "rn"]


def _made_up_word(rng: random.Random) -> str:
    word = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)
                   for _ in range(rng.randint(1, 4)))
    roll = rng.random()
    if roll < 0.10:
        word = word.capitalize()
    elif roll < 0.13:
        word = word.upper()
    elif roll < 0.18:      # camelCase: one pre-token too
        word += _made_up_word(rng).capitalize()
    return word


def cold_corpus(min_bytes: int, seed: int = 4321) -> list:
    """Documents in which (almost) no pre-token repeats: paragraphs of made-up words (Latin
    letters with accents) and CJK runs, each pre-token used once in the whole corpus (only
    the closing ".\n" of each document repeats). No digits: the pre-tokenizer splits numbers
    into single digits, which would repeat. Deterministic."""
    rng = random.Random(seed)
    seen, docs, size = set(), [], 0
    while size < min_bytes:
        words, n_words = [], rng.randint(60, 400)
        while len(words) < n_words:
            if rng.random() < 0.15:
                word = "".join(rng.choice(_CJK) for _ in range(rng.randint(2, 6)))
            else:
                word = _made_up_word(rng)
            piece = (" " if words else "") + word      # the pre-token as the pre-tokenizer cuts it
            if piece in seen:
                continue
            seen.add(piece)
            words.append(word)
        doc = " ".join(words) + ".\n"
        docs.append(doc)
        size += len(doc.encode("utf-8"))
    return docs


def count_pretokens(split, docs: list) -> tuple:
    """(pre-tokens, distinct pre-tokens) over the whole corpus, as split cuts them."""
    total, distinct = 0, set()
    for doc in docs:
        pieces = split(doc)
        total += len(pieces)
        distinct.update(pieces)
    return total, len(distinct)


def cold_throughput(make_encode, docs: list, n_bytes: int, repeat: int) -> float:
    """MB/s of the best of `repeat` passes, each by a freshly built encoder (empty caches)
    over docs once; building it is not timed."""
    best = float("inf")
    for _ in range(repeat):
        encode = make_encode()
        start = time.perf_counter()
        for doc in docs:
            encode(doc)
        best = min(best, time.perf_counter() - start)
    return n_bytes / best / 1e6


def throughput(encode, docs: list, n_bytes: int, repeat: int) -> float:
    """MB/s of the best of `repeat` passes (after a warm-up pass)."""
    for doc in docs[: max(1, len(docs) // 10)]:
        encode(doc)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for doc in docs:
            encode(doc)
        best = min(best, time.perf_counter() - start)
    return n_bytes / best / 1e6


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tokenizer", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="GGUF file (default: the pulled model)")
    parser.add_argument("--mb", type=float, default=0.6, help="corpus size in MB (>= 0.5)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    from fuzz.tokenizer import default_model_path, hf_reference
    from ignis.gguf import GGUFFile
    from ignis.tokenizer import Tokenizer
    with GGUFFile(args.model or default_model_path()) as gguf:
        metadata = gguf.metadata
    try:
        hf = hf_reference(metadata)
    except ImportError:
        print("bench.tokenizer: needs Hugging Face tokenizers (pip install tokenizers)", file=sys.stderr)
        return 2
    tok = Tokenizer.from_metadata(metadata)
    min_bytes = int(max(args.mb, 0.5) * 1e6)

    def hf_encode(encoder):
        return lambda d: encoder.encode(d, add_special_tokens=False)

    # warm: a corpus whose words repeat, after a warm-up pass
    docs = corpus(min_bytes)
    n_bytes = sum(len(d.encode("utf-8")) for d in docs)
    mismatched = sum(tok.encode(d) != hf.encode(d, add_special_tokens=False).ids for d in docs)
    pieces, distinct = count_pretokens(tok._pre.split, docs)
    tok._bpe.clear_cache()      # the timed runs start from the same cold-ish state as HF's
    ours = throughput(tok.encode, docs, n_bytes, args.repeat)
    theirs = throughput(hf_encode(hf), docs, n_bytes, args.repeat)

    # cold: every pre-token new, fresh tokenizers for every pass
    cold = cold_corpus(min_bytes)
    cold_bytes = sum(len(d.encode("utf-8")) for d in cold)
    cold_pieces, cold_distinct = count_pretokens(tok._pre.split, cold)
    fresh = Tokenizer.from_metadata(metadata)
    cold_mismatched = sum(fresh.encode(d) != hf.encode(d, add_special_tokens=False).ids for d in cold)
    cold_ours = cold_throughput(lambda: Tokenizer.from_metadata(metadata).encode, cold, cold_bytes, args.repeat)
    cold_theirs = cold_throughput(lambda: hf_encode(hf_reference(metadata)), cold, cold_bytes, args.repeat)

    print(f"warm corpus: {len(docs)} documents, {n_bytes / 1e6:.2f} MB, {distinct} distinct of {pieces} "
          f"pre-tokens, ids identical in {len(docs) - mismatched}/{len(docs)}")
    print(f"cold corpus: {len(cold)} documents, {cold_bytes / 1e6:.2f} MB, {cold_distinct} distinct of "
          f"{cold_pieces} pre-tokens, ids identical in {len(cold) - cold_mismatched}/{len(cold)}")
    print(f"{'':22}{'warm':>8}{'cold':>8}")
    print(f"{'ignis encode':22}{ours:8.2f}{cold_ours:8.2f}  MB/s")
    print(f"{'HF tokenizers encode':22}{theirs:8.2f}{cold_theirs:8.2f}  MB/s")
    print(f"{'ratio ignis / HF':22}{ours / theirs:7.2f}x{cold_ours / cold_theirs:7.2f}x")
    return 0 if mismatched == 0 and cold_mismatched == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
