"""The llama and gemma3 builders on tiny generated models: the compiled plan against the
reference interpreter, sliding-window attention (a prompt longer than the window, in one
chunk or many, alone or in a batch), and config errors: one line naming the key."""
import numpy as np
import pytest

import ignis
from ignis.errors import ModelError
from ignis.gguf import GGUFFile
from ignis.ir import KVCache, run
from ignis.models import Gemma3Config, LlamaConfig, build_graph, config_from_file, load_weights
from ignis.runtime.engine import Engine
from ignis.testing import qwen2_metadata, tiny_gemma3_config, tiny_llama_config, write_model

from helpers import EngineSequence

N_CTX = 64
IDS = [5, 17, 200, 3, 99, 42, 7, 250, 1, 64, 12, 180, 33, 8, 140, 77, 2, 210, 66, 9, 101, 150, 4, 31]


def _write(tmp_path, config, name):
    return write_model(tmp_path / f"{name}.gguf", config, {}, seed=3)


@pytest.fixture(scope="module")
def tiny_llama_path(tmp_path_factory):
    return _write(tmp_path_factory.mktemp("llama"), tiny_llama_config(n_layers=2), "llama")


@pytest.fixture(scope="module")
def tiny_gemma3_path(tmp_path_factory):
    # 3 layers: local, local, global (global_every=3); window 8 < the 24-token prompt
    return _write(tmp_path_factory.mktemp("gemma3"), tiny_gemma3_config(n_layers=3, window=8), "gemma3")


def _reference_logits(path, ids):
    with GGUFFile(path) as f:
        config = config_from_file(f)
        cache = KVCache(config.n_layers, N_CTX, config.n_kv_heads, config.head_dim)
        graph = build_graph(config, len(ids), all_logits=True)
        return run(graph, load_weights(f), {"tokens": np.array(ids), "pos": np.arange(len(ids))}, cache)["logits"]


def _engine(path, passes=None, threads=2):
    """(the open file, one sequence of an Engine over it)."""
    gguf = GGUFFile(path)
    return gguf, EngineSequence(Engine(gguf, config_from_file(gguf), N_CTX, threads, passes, kv_tokens=4 * N_CTX))


@pytest.mark.parametrize("which", ["tiny_llama_path", "tiny_gemma3_path"])
def test_compiled_plan_matches_reference_interpreter(which, request):
    path = request.getfixturevalue(which)
    gguf, engine = _engine(path)
    with gguf:
        ours = engine.forward(IDS, 0, all_logits=True)
    ref = _reference_logits(path, IDS)
    assert ours.shape == ref.shape == (len(IDS), 300)
    # Q8_0 weights and activations against float32: a few percent of the logit spread at most
    err = np.abs(ours - ref).max() / (np.abs(ref).max() + 1e-6)
    assert err < 0.05, err
    assert (ours.argmax(-1) == ref.argmax(-1)).mean() >= 0.8


def test_gemma3_graph_structure():
    c = tiny_gemma3_config(n_layers=6, window=8, global_every=3)
    g = build_graph(c, 4)
    attn = [op for op in g.ops if op.kind == "attention"]
    assert [op.attrs.get("window") for op in attn] == [8, 8, None, 8, 8, None]
    ropes = [op.attrs["theta"] for op in g.ops if op.kind == "rope"][::2]      # q's of each layer
    assert ropes == [10000.0, 10000.0, 1e6, 10000.0, 10000.0, 1e6]
    # the real model's pattern: layers 5, 11, 17 of 18 are global
    real = Gemma3Config(n_layers=18, width=640, ffn=2048, n_heads=4, n_kv_heads=1, head_dim=256, vocab=300)
    assert [L for L in range(18) if real.is_global(L)] == [5, 11, 17]


def test_window_is_what_the_reference_reads():
    """The interpreter's window: changing a key outside a token's window changes nothing."""
    c = tiny_gemma3_config(n_layers=1, window=4, global_every=7)     # one local layer
    from ignis.testing import random_qwen2_weights
    w = random_qwen2_weights(c, 0)
    g = build_graph(c, 12, all_logits=True)
    inputs = {"tokens": np.arange(12) + 5, "pos": np.arange(12)}
    base = run(g, w, inputs, KVCache.for_graph(g, 16))["logits"]
    changed = dict(inputs, tokens=np.array([250] + list(inputs["tokens"][1:])))
    other = run(g, w, changed, KVCache.for_graph(g, 16))["logits"]
    assert not np.array_equal(base[:4], other[:4])          # positions 0..3 see token 0
    assert np.array_equal(base[4:], other[4:])              # position 4 on: out of the window


def test_gemma3_chunks_and_batches_give_the_same_bits(tiny_gemma3_path):
    """A prompt longer than the window: one chunk, many chunks, token by token, and inside a
    batch with another sequence all give the same logits."""
    gguf, engine = _engine(gguf_path := tiny_gemma3_path)
    with gguf:
        whole = engine.forward(IDS, 0, all_logits=True)
        pieces = []
        for lo, hi in ((0, 5), (5, 13), (13, 14), (14, 24)):
            pieces.append(engine.forward(IDS[lo:hi], lo, all_logits=True))
        assert np.array_equal(whole, np.concatenate(pieces))
        steps = [engine.forward([t], i) for i, t in enumerate(IDS)]
        assert np.array_equal(whole, np.stack(steps))
        # a batch: the same prompt interleaved with another sequence's tokens
        kv = engine.kv
        engine = engine.engine
        a, b = kv.new_sequence(), kv.new_sequence()
        other = [7, 8, 9, 10, 11, 12, 13, 14, 15, 16]
        out_a = []
        for i in range(len(IDS)):
            tokens, seqs, positions = [IDS[i]], [a], [i]
            if i < len(other):
                tokens, seqs, positions = tokens + [other[i]], seqs + [b], positions + [i]
            for s in seqs:
                kv.reserve(s, 1)
            out_a.append(engine.step(tokens, seqs, positions, [0])[0])
        assert np.array_equal(whole, np.stack(out_a)), gguf_path


@pytest.mark.parametrize("which", ["tiny_llama_path", "tiny_gemma3_path"])
def test_fused_equals_unfused(which, request):
    path = request.getfixturevalue(which)
    gf, fused = _engine(path)
    gu, unfused = _engine(path, passes=[])
    with gf, gu:
        assert np.array_equal(fused.forward(IDS, 0, all_logits=True), unfused.forward(IDS, 0, all_logits=True))
        assert np.array_equal(fused.forward([3], len(IDS)), unfused.forward([3], len(IDS)))


@pytest.mark.parametrize("which", ["tiny_llama_path", "tiny_gemma3_path"])
def test_load_and_generate(which, request):
    model = ignis.load(request.getfixturevalue(which), n_ctx=N_CTX, threads=1)
    try:
        assert model.config.ARCH == ("llama" if which == "tiny_llama_path" else "gemma3")
        text = model.generate("hello", max_tokens=6, temperature=0)
        assert isinstance(text, str)
        assert model.greedy_ids([5, 6, 7], 4, stop_ids=()) == model.greedy_ids([5, 6, 7], 4, stop_ids=())
    finally:
        model.close()


# -- config errors ---------------------------------------------------------------------------

def _metadata(config):
    return qwen2_metadata(config, "t", 1)[0]


class _Info:
    def __init__(self, shape, type_name="F32"):
        from ignis.gguf import TensorType
        self.shape, self.type = shape, TensorType[type_name]


def _tensors(config):
    return {name: _Info(shape, "Q8_0" if len(shape) == 2 else "F32") for name, shape in config.tensor_shapes().items()}


@pytest.mark.parametrize("arch, change, needle", [
    ("gemma3", {"gemma3.attention.sliding_window": None}, "metadata key gemma3.attention.sliding_window is missing"),
    ("gemma3", {"gemma3.attention.sliding_window": 0}, "gemma3.attention.sliding_window = 0, expected a positive"),
    ("gemma3", {"gemma3.attention.key_length": 63, "gemma3.attention.value_length": 63},
     "gemma3.attention.key_length = 63 must be even"),
    ("gemma3", {"gemma3.attention.value_length": 32}, "gemma3.attention.value_length = 32, expected 64"),
    ("gemma3", {"gemma3.attention.head_count_kv": 3}, "gemma3.attention.head_count 2 is not a multiple"),
    ("gemma3", {"gemma3.final_logit_softcapping": 30.0}, "gemma3.final_logit_softcapping is set"),
    ("gemma3", {"gemma3.rope.freq_base": -1.0}, "gemma3.rope.freq_base = -1.0, expected a positive number"),
    ("gemma3", {"gemma3.attention.key_length": 32, "gemma3.attention.value_length": 32},
     "tensor blk.0.attn_q.weight has shape (128, 64), expected (64, 64)"),
    ("llama", {"llama.rope.dimension_count": 8}, "llama.rope.dimension_count = 8, expected 16"),
    ("llama", {"llama.attention.head_count": 5}, "llama.embedding_length 64 is not divisible by llama.attention.head_count 5"),
    ("llama", {"llama.block_count": None}, "metadata key llama.block_count is missing"),
])
def test_config_errors_name_the_key(arch, change, needle):
    config = tiny_gemma3_config() if arch == "gemma3" else tiny_llama_config()
    metadata = _metadata(config)
    for key, value in change.items():
        if value is None:
            metadata.pop(key)
        else:
            metadata[key] = value
    cls = Gemma3Config if arch == "gemma3" else LlamaConfig
    with pytest.raises(ModelError) as info:
        cls.from_gguf(metadata, _tensors(config), "m.gguf")
    message = str(info.value)
    assert "\n" not in message and message.startswith("m.gguf: ") and needle in message, message


def test_config_by_hand_is_checked():
    with pytest.raises(ModelError, match="gemma3 config: window must be a positive integer"):
        tiny_gemma3_config(window=0)
    with pytest.raises(ModelError, match="gemma3 config: head_dim 7 must be even"):
        tiny_gemma3_config(head_dim=7)
    with pytest.raises(ModelError, match="llama config: n_heads 4 is not a multiple of n_kv_heads 3"):
        tiny_llama_config(n_kv_heads=3)


def test_unknown_architecture_is_one_line(tmp_path):
    config = tiny_llama_config()
    path = write_model(tmp_path / "m.gguf", config, {})
    with GGUFFile(path) as f:
        f.metadata["general.architecture"] = "mamba"
        with pytest.raises(ModelError, match=r"general.architecture is 'mamba': that architecture is not supported "
                                             r"\(ignis runs qwen2, llama, gemma3\)"):
            config_from_file(f)


# -- the sliding-window KV cache ---------------------------------------------------------------

def test_gemma3_windowed_cache_releases_and_stays_exact(tmp_path):
    """A sequence longer than window + slack: decoding token by token releases the local
    layers' old blocks, and the logits keep the bits of the whole prompt in one chunk."""
    from ignis.runtime.engine import WINDOW_SLACK
    config = tiny_gemma3_config(n_layers=3, window=8, n_ctx=256)
    path = _write(tmp_path, config, "long")
    ids = [(7 * i + 3) % 290 for i in range(200)]
    g1, one = GGUFFile(path), None
    with g1, GGUFFile(path) as g2:
        one = EngineSequence(Engine(g1, config_from_file(g1), 256, 2), chunk=256)
        whole = one.forward(ids, 0, all_logits=True)
        step = EngineSequence(Engine(g2, config_from_file(g2), 256, 1))
        rows = [step.forward(ids[:16], 0, all_logits=True)]
        rows += [step.forward([t], 16 + i)[None] for i, t in enumerate(ids[16:])]
        assert np.array_equal(whole, np.concatenate(rows))
        local, full = step.kv.local, step.kv.full
        held = local.n_used_blocks * local.block_size
        assert held <= 8 + WINDOW_SLACK + 2 * local.block_size < 200 <= full.n_used_blocks * full.block_size
        assert step.keepable(200) == 200 and step.keepable(20) == 0


def test_model_rewinds_through_the_prefix_cache_when_the_window_is_gone(tmp_path):
    """The session's own sequence cannot go back to position 30 (its local layers released
    that window); the pool's cached blocks can: block 0 of both pools (positions 0..15) is
    reused, the rest recomputed, with the bits of a fresh model."""
    config = tiny_gemma3_config(n_layers=3, window=8, n_ctx=256)
    path = _write(tmp_path, config, "rewind")
    ids = [(5 * i + 1) % 290 for i in range(160)]
    model = ignis.load(str(path), n_ctx=256, threads=1)
    fresh = ignis.load(str(path), n_ctx=256, threads=1)
    try:
        model.eval_prompt(ids[:40])
        for t in ids[40:]:                  # decode: the local layers' early blocks go
            model.eval([t])
        other = ids[:30] + [9, 8, 7]        # shares 30 tokens, whose window is gone
        got = model.eval_prompt(other)
        assert model.last_prompt_evaluated == len(other) - 16      # block 0 from the cache
        assert np.array_equal(got, fresh.eval_prompt(other))
    finally:
        model.close()
        fresh.close()


def test_the_kernels_window_edge(tmp_path):
    """One local layer: position p's logits are a function of tokens p - W + 1 .. p exactly.
    Through the compiled kernels, changing token 3 changes positions 3 .. 3 + W - 1 and
    leaves every later position's bits alone."""
    W = 4
    config = tiny_gemma3_config(n_layers=1, window=W, global_every=7)
    path = _write(tmp_path, config, "edge")
    ids = [(11 * i + 5) % 290 for i in range(20)]
    changed = list(ids)
    changed[3] = 299
    gguf, engine = _engine(path)
    with gguf:
        a = engine.forward(ids, 0, all_logits=True)
        b = engine.forward(changed, 0, all_logits=True)
    differs = [p for p in range(20) if not np.array_equal(a[p], b[p])]
    assert differs == list(range(3, 3 + W))


# -- the real files' graphs ----------------------------------------------------------------------

@pytest.mark.real
@pytest.mark.parametrize("fixture, unfused, fused, rewrites", [
    ("smollm2_path", 575, 214, {"fuse_rmsnorm": 61, "fuse_swiglu": 30, "fuse_qkv": 30, "fuse_residual": 60,
                                "fuse_gate_up": 30}),
    # gemma3: 36 post-norm + residual fusions, q/k head norms inside the qkv kernel
    ("gemma3_path", 456, 167, {"fuse_rmsnorm": 73, "fuse_qkv": 18, "fuse_gate_up": 18, "fuse_norm_add": 36}),
])
def test_real_graphs_fuse(fixture, unfused, fused, rewrites, request):
    from ignis.passes import run_pipeline
    with GGUFFile(request.getfixturevalue(fixture)) as f:
        config = config_from_file(f)
    g = build_graph(config, 512)
    out, reports = run_pipeline(g)
    assert (len(g.ops), len(out.ops)) == (unfused, fused)
    assert {r.name: r.rewrites for r in reports if r.rewrites} == rewrites


@pytest.mark.parametrize("slack", [0, 64])
def test_windowed_cache_shared_by_interleaved_sequences(tmp_path, monkeypatch, slack):
    """Two sequences decoded in one batch, the second starting later, with (slack 0) no margin
    behind the window: a block released too early is taken by the other sequence at once and
    overwritten. Each sequence's logits keep the bits of its prompt run alone in one chunk."""
    import ignis.runtime.engine as engine_module
    monkeypatch.setattr(engine_module, "WINDOW_SLACK", slack)
    config = tiny_gemma3_config(n_layers=3, window=8, n_ctx=256)
    path = _write(tmp_path, config, f"shared{slack}")
    ids = {0: [(7 * i + 3) % 290 for i in range(120)], 1: [(13 * i + 1) % 290 for i in range(100)]}
    with GGUFFile(path) as g:
        ref = EngineSequence(Engine(g, config_from_file(g), 256, 1), chunk=256)
        want = {s: ref.forward(ids[s], 0, all_logits=True) for s in (0, 1)}
        engine = Engine(g, config_from_file(g), 256, 2, kv_tokens=512)
        kv = engine.kv
        seqs = {s: kv.new_sequence() for s in (0, 1)}
        got = {0: [], 1: []}
        for step in range(120):
            batch = [s for s in (0, 1) if (s == 0 or step >= 20) and len(got[s]) < len(ids[s])]
            for s in batch:
                kv.reserve(seqs[s], 1)
            out = engine.step([ids[s][len(got[s])] for s in batch], [seqs[s] for s in batch],
                              [len(got[s]) for s in batch], list(range(len(batch))))
            for row, s in zip(out, batch):
                got[s].append(row)
        for s in (0, 1):
            assert np.array_equal(np.stack(got[s]), want[s]), f"sequence {s}"
        assert kv.local.n_used_blocks <= 2 * (-(-(8 + slack) // 16) + 2) + 1      # + the padding sequence


def test_text_prompts_start_with_bos_when_the_vocabulary_asks(tiny_gemma3_path):
    """Gemma 3 needs BOS: a text prompt gets it (once, also when a template already put it)."""
    model = ignis.load(tiny_gemma3_path, n_ctx=N_CTX, threads=1)
    try:
        tok = model.tokenizer
        assert model._prompt_ids("hello")[:1] != [tok.bos_id]          # the tiny vocabulary: no BOS
        tok.add_bos = True
        ids = model._prompt_ids("hello")
        assert ids[0] == tok.bos_id and ids[1:] == model.tokenize("hello")
        bos_text = tok.decode([tok.bos_id])
        assert model._prompt_ids(bos_text + "hello") == ids
        assert model._prompt_ids([5, 6]) == [5, 6]                      # ids are taken as they are
    finally:
        model.close()


def test_qkv_norm_rope_kv_needs_both_gains():
    """Found by fuzz/plan_api.py: a None gain made the op a silent qkv_rope_kv without norms."""
    from ignis import _kernels as K
    w = np.zeros((6, 34), np.uint8)          # 6 Q8_0 rows of 32: q, k, v of one head of 2
    for gq, gk, missing in ((None, np.ones(2), "gq"), (np.ones(2), None, "gk")):
        plan = K.Plan(4096, 1, 1)
        with pytest.raises(ModelError, match=f"qkv_norm_rope_kv {missing}: vector is missing"):
            plan.add_qkv_norm_rope_kv(0, 128, w, gq, gk, 0, 1, 1, 2, 10000.0, 1e-6, 32, 8)
        assert plan.n_instructions == 0


def test_a_file_without_a_chat_template_gets_the_turns_its_vocabulary_has():
    from ignis.runtime.chat import CHATML, GEMMA_TURNS, ChatTemplate, default_template
    assert default_template({"<|im_start|>": 1, "<|im_end|>": 2}) == CHATML
    assert default_template({"<start_of_turn>": 105, "<end_of_turn>": 106}) == GEMMA_TURNS
    text = ChatTemplate(GEMMA_TURNS).render([{"role": "system", "content": "Be brief."},
                                             {"role": "user", "content": "Hi"},
                                             {"role": "assistant", "content": "Hello!"},
                                             {"role": "user", "content": "Bye"}])
    assert text == ("<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n"
                    "<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n")


@pytest.mark.real
def test_gemma3_chat_prompt_uses_its_turn_tokens(gemma3_path):
    model = ignis.load(gemma3_path, n_ctx=256)
    try:
        ids = model.tokenize(model.render_chat([{"role": "user", "content": "Hi"}]))
        specials = model.tokenizer.special_tokens
        assert specials["<start_of_turn>"] in ids and specials["<end_of_turn>"] in ids
    finally:
        model.close()
