"""Coverage-guided fuzzing of GGUF input with atheris (libFuzzer for Python).

    pip install atheris
    python -m fuzz.gguf_atheris reader /tmp/corpus_reader fuzz/corpus/reader -max_total_time=600
    mkdir -p /tmp/corpus_load && tar xJf fuzz/corpus/load.tar.xz -C /tmp/corpus_load
    python -m fuzz.gguf_atheris load   /tmp/corpus_load -max_len=12000 -runs=200000
    python -m fuzz.gguf_atheris --write-seeds DIR          # the seed files (ignis' writer)

Targets (each input is the bytes of a file):
  reader  GGUFFile on the bytes, then `ignis inspect` (text and JSON): a one-line GGUFError,
          or a file whose every tensor is inside the buffer, aligned, sized by its type
          and shape, and not overlapping another (fuzz.gguf_mutator.check_reader)
  load    ignis.load on the bytes: reader -> Qwen2Config.from_file -> Tokenizer ->
          NaN/Inf check -> build_graph -> passes -> plan_memory -> lowering -> one greedy
          token; a one-line IgnisError, or a Model that generates (check_load)
Anything else (another exception, a crash, a hang past -timeout) is a bug. libFuzzer
options follow the target and the corpus directories; the first directory receives the
inputs that reach new coverage. The kept corpora (fuzz/corpus/reader/ and
fuzz/corpus/load.tar.xz, unpack it with `tar xJf ... -C DIR`) are replayed by
tests/test_hardening_fuzz.py; minimise a new one with -merge=1 into an empty directory.
Only ignis' own Python modules are instrumented (numpy and the Cython kernels are not).
"""
import argparse
import atexit
import os
import shlex
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _write_seeds(directory: str) -> None:
    from fuzz.gguf_mutator import seeds
    os.makedirs(directory, exist_ok=True)
    for name, blob in seeds().items():
        with open(os.path.join(directory, name), "wb") as f:
            f.write(blob)
        print(os.path.join(directory, name), len(blob))


def target(name: str):
    """The function of one input for a target (also what the corpus replay test calls)."""
    from fuzz.gguf_mutator import check_load, check_reader
    if name == "reader":
        def one(data: bytes) -> None:
            check_reader(data, strict=False)
    elif name == "load":
        def one(data: bytes) -> None:
            check_load(data)
    else:
        raise ValueError(f"unknown target {name!r} (reader, load)")
    return one


def _self_command(target_name: str) -> str:
    """A program that runs this target again: libFuzzer's -merge=1 and -fork=N modes start
    argv[0] as a child process with the libFuzzer options only."""
    fd, path = tempfile.mkstemp(prefix=f"ignis-fuzz-{target_name}-", suffix=".sh")
    os.write(fd, (f"#!/bin/sh\nPYTHONPATH={shlex.quote(ROOT)}${{PYTHONPATH:+:$PYTHONPATH}} exec "
                  f"{shlex.quote(sys.executable)} -m fuzz.gguf_atheris {target_name} \"$@\"\n").encode())
    os.close(fd)
    os.chmod(path, 0o755)
    atexit.register(os.unlink, path)
    return path


CORPUS = os.path.join(ROOT, "fuzz", "corpus")


def corpus(name: str):
    """(file name, bytes) of the kept corpus of a target: the files of fuzz/corpus/<name>/
    and the members of fuzz/corpus/<name>.tar.xz (the load target's inputs are ~10 KB
    model files that differ in a few bytes: xz keeps 600 KB of them in 32 KB)."""
    import tarfile
    directory = os.path.join(CORPUS, name)
    if os.path.isdir(directory):
        for entry in sorted(os.listdir(directory)):
            with open(os.path.join(directory, entry), "rb") as f:
                yield entry, f.read()
    archive = directory + ".tar.xz"
    if os.path.exists(archive):
        with tarfile.open(archive, "r:xz") as tar:
            for member in sorted(tar.getmembers(), key=lambda m: m.name):
                if member.isfile():
                    yield os.path.basename(member.name), tar.extractfile(member).read()


def main(argv=None) -> int:
    argv = list(sys.argv if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m fuzz.gguf_atheris", add_help=True,
                                     description=__doc__.splitlines()[0])
    parser.add_argument("target", nargs="?", choices=("reader", "load"))
    parser.add_argument("--write-seeds", metavar="DIR")
    args, libfuzzer_args = parser.parse_known_args(argv[1:])
    if args.write_seeds:
        _write_seeds(args.write_seeds)
        return 0
    if not args.target:
        parser.error("give a target (reader or load) or --write-seeds DIR")

    import atheris
    with atheris.instrument_imports(include=["ignis"]):
        import ignis  # noqa: F401  (instrumented: the reader, inspect, models, passes, runtime, tokenizer)
        import ignis.gguf.reader  # noqa: F401
        import ignis.inspect  # noqa: F401
        import ignis.models.qwen2  # noqa: F401
        import ignis.passes  # noqa: F401
        import ignis.runtime.engine  # noqa: F401
        import ignis.runtime.lower  # noqa: F401
        import ignis.runtime.validate  # noqa: F401
        import ignis.tokenizer  # noqa: F401
    one = target(args.target)
    atheris.Setup([_self_command(args.target)] + libfuzzer_args, one)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main())
