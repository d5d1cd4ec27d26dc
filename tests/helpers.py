"""Helpers more than one test module uses: the hypothesis settings of the slow properties,
the round-trip and stream properties of a real model's tokenizer, and an `ignis` process
slowed down enough to be interrupted mid-generation."""
import os
import subprocess
import sys
import textwrap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

try:                    # the properties live in fuzz/, which runs them for much longer
    from fuzz import tokenizer as props
except ImportError:     # plain `pytest` does not put the repository root on sys.path
    sys.path.insert(0, ROOT)
    from fuzz import tokenizer as props

few = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def real_tokenizer_properties() -> type:
    """Round trip and streaming on a real model's vocabulary, as a base for a test class
    that gives that tokenizer as its fixture `tok`. A fresh class per call: hypothesis
    wants each test function run on instances of one class only."""

    class RealTokenizerProperties:
        @pytest.mark.real
        @few
        @given(props.texts)
        def test_roundtrip(self, tok, text):
            props.check_roundtrip(tok, text)

        @pytest.mark.real
        @few
        @given(st.data())
        def test_stream(self, tok, data):
            props.check_stream(tok, data.draw(props.token_ids(tok.n_vocab)))

        @pytest.mark.real
        @few
        @given(props.texts)
        def test_stream_of_encoded_text(self, tok, text):
            props.check_stream(tok, tok.encode(text))

    return RealTokenizerProperties


def start_slowed_ignis(argv: list, stdin, **env) -> subprocess.Popen:
    """`ignis ARGV` in a child process whose every sampled token waits 20 ms, so that a
    SIGINT sent once output appears lands mid-generation; env adds environment variables."""
    script = textwrap.dedent(f"""
        import sys, time
        import ignis.runtime.generate as g
        accept = g.Completion.accept
        def slow(self, token, logprob=None):
            time.sleep(0.02)
            return accept(self, token, logprob)
        g.Completion.accept = slow
        from ignis.cli import main
        sys.exit(main({argv!r}))
    """)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), **env)
    return subprocess.Popen([sys.executable, "-c", script], stdin=stdin, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, cwd=ROOT)


def weights_in_place(model) -> bool:
    """Every weight matrix the model's plans use is a view of the mmapped file (no converted copy)."""
    arrays = []
    for value in model.engine.weights._matrices.values():
        arr = value[0]
        arrays += arr if isinstance(arr, list) else [arr]
    return bool(arrays) and all(not a.flags.owndata for a in arrays)
