"""The GGUF fuzzers at test size (issue 7): the kept atheris corpus replayed through both
targets, the Hypothesis structured mutator with a few hundred examples per property, and
regression tests for what the fuzzers found. Long runs: see fuzz/README.md."""
import json

import pytest

from fuzz.gguf_atheris import corpus, target
from fuzz.gguf_mutator import (build_doc, check_load, check_reader, micro_metadata, micro_tensors, run, seeds,
                               _write_with_ignis)
from ignis.errors import GGUFError, IgnisError
from ignis.gguf import GGUFFile, ValueType

def test_corpus_is_kept():
    reader, load = list(corpus("reader")), list(corpus("load"))
    assert len(reader) >= 20 and len(load) >= 20
    # the load corpus holds whole (mutated) micro models as well as early rejects
    assert any(len(data) > 9000 for _, data in load) and any(len(data) < 1000 for _, data in load)


@pytest.mark.parametrize("name", ["reader", "load"])
def test_corpus_replays_without_a_crash(name):
    """Every input that reached new coverage, through its target: IgnisError or success."""
    one = target(name)
    for file_name, data in corpus(name):
        try:
            one(data)
        except Exception as exc:    # noqa: BLE001 -- name the input that broke
            raise AssertionError(f"{name} corpus {file_name}: {type(exc).__name__}: {exc}") from exc


def test_seeds_are_valid_and_the_micro_models_load():
    for name, blob in seeds().items():
        assert check_reader(blob) is not None, name
        if name.startswith("micro"):
            assert check_load(blob) == "loaded", name


def test_fuzz_encoder_writes_what_ignis_writes():
    """The mutator's own encoder (free to lie) agrees byte for byte with ignis' writer on a
    valid file, so its lies are the only differences."""
    for variant in ("q8_0", "mixed", "f32"):
        tensors = micro_tensors(variant)
        assert build_doc(micro_metadata(), tensors).encode() == _write_with_ignis(micro_metadata(), tensors)


def test_from_bytes_reads_what_the_file_reader_reads(tmp_path):
    blob = seeds()["tensors.gguf"]
    path = tmp_path / "t.gguf"
    path.write_bytes(blob)
    with GGUFFile(path) as a:
        b = GGUFFile.from_bytes(bytearray(blob), "t.gguf")
        assert a.metadata == b.metadata and a.metadata_types == b.metadata_types
        assert [(t.name, t.type, t.shape, t.offset, t.data.tobytes()) for t in a.tensors.values()] == \
               [(t.name, t.type, t.shape, t.offset, t.data.tobytes()) for t in b.tensors.values()]
        assert b.file_size == a.file_size == len(blob)
    with pytest.raises(GGUFError, match="mem.gguf: file is empty"):
        GGUFFile.from_bytes(b"", "mem.gguf")


def test_hypothesis_mutator_test_sized():
    """The structured mutator, a few hundred examples in all (python -m fuzz.gguf_mutator
    --examples 100000 for the long run)."""
    done = run(400, seed=0, quiet=True)     # fixed seed: the suite is deterministic
    assert set(done) == {"raw", "model", "tokenizer"}


# -- regressions for what the fuzzers found ---------------------------------------------------

def _inspect_both(blob):
    from ignis.inspect import describe, format_report
    g = GGUFFile.from_bytes(blob, "x.gguf")
    return format_report(g), json.dumps(describe(g))


def test_inspect_with_a_non_string_architecture():
    """Found by the mutator: general.architecture = [[]] made `ignis inspect` raise TypeError
    (`arch + "."`) instead of printing the file."""
    blob = _write_with_ignis([("general.name", ValueType.UINT8, 0),
                              ("general.architecture", (ValueType.ARRAY, (ValueType.ARRAY, ValueType.UINT8)),
                               [[]])], [])
    text, js = _inspect_both(blob)
    assert "architecture: (none)" in text and '"architecture": ""' in js


def test_inspect_with_a_tokenizer_array_that_is_not_an_array():
    """Found by the mutator: tokenizer.ggml.tokens = 0 (a scalar) made `ignis inspect`
    raise TypeError (len of an int)."""
    blob = _write_with_ignis([("tokenizer.ggml.tokens", ValueType.UINT32, 0),
                              ("tokenizer.ggml.merges", ValueType.STRING, "a b")], [])
    text, _ = _inspect_both(blob)
    assert "? tokens, ? merges" in text


def test_load_with_a_tokenizer_array_that_is_not_an_array():
    """Found reading the loader for the mutator: tokenizer.ggml.tokens = 7 made Qwen2Config.from_gguf raise
    TypeError; now a ModelError naming the key."""
    metadata = [m if m[0] != "tokenizer.ggml.tokens" else (m[0], ValueType.UINT32, 7) for m in micro_metadata()]
    outcome = check_load(build_doc(metadata, micro_tensors()).encode())
    assert outcome.startswith("rejected: ModelError") and "tokenizer.ggml.tokens is a int" in outcome


def test_check_load_reports_a_non_ignis_exception():
    """The harness itself: an exception that is not an IgnisError escapes (is a crash)."""
    import ignis.runtime.model as model_module
    original = model_module.check_finite_weights

    def broken(*args, **kwargs):
        raise ZeroDivisionError("boom")
    model_module.check_finite_weights = broken
    try:
        with pytest.raises(ZeroDivisionError):
            check_load(seeds()["micro_q8_0.gguf"])
    finally:
        model_module.check_finite_weights = original
    assert issubclass(GGUFError, IgnisError)
