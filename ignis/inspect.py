"""What `ignis inspect` shows: architecture, hyper-parameters, tokenizer summary, tensor table."""
from collections import defaultdict

from ignis.gguf import GGUFFile
from ignis.gguf.types import TensorType

LONG_ARRAY = 16  # arrays longer than this are summarised, not dumped


def _summarise(value, vtype):
    if isinstance(value, list) and len(value) > LONG_ARRAY:
        item = vtype[1] if isinstance(vtype, tuple) else None
        item_name = item.name.lower() if hasattr(item, "name") else "array"
        return {"array_of": item_name, "length": len(value), "head": value[:4]}
    return value


def type_name(ttype) -> str:
    """A tensor's type by name; an id GGML does not define as "type 99"."""
    return ttype.name if isinstance(ttype, TensorType) else f"type {int(ttype)}"


def describe(gguf: GGUFFile) -> dict:
    """The inspect report as plain data (what --json prints)."""
    return {
        "architecture": gguf.architecture,
        "version": gguf.version,
        "metadata": {k: _summarise(v, gguf.metadata_types[k]) for k, v in gguf.metadata.items()},
        "tensors": [{"name": t.name, "type": type_name(t.type), "shape": list(t.ne), "bytes": t.nbytes}
                    for t in gguf.tensors.values()],
    }


def _count(value) -> str:
    """Length of an array value; '?' for a value that is not one (a malformed file)."""
    return str(len(value)) if isinstance(value, list) else "?"


def _human_bytes(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n} B"


def format_report(gguf: GGUFFile) -> str:
    """The inspect report as text."""
    md, arch = gguf.metadata, gguf.architecture
    lines = [f"file: {gguf.path}", f"gguf version: {gguf.version}, alignment {gguf.alignment}",
             f"architecture: {arch or '(none)'}", f"name: {md.get('general.name', '(none)')}"]
    if f"{arch}.block_count" in md:
        lines.append(f"blocks: {md[f'{arch}.block_count']}")
    lines.append("hyper-parameters:")
    for key, value in md.items():
        if arch and key.startswith(arch + "."):
            lines.append(f"  {key[len(arch) + 1:]:40s} {value}")
    tok = {k[len("tokenizer.ggml."):]: v for k, v in md.items() if k.startswith("tokenizer.ggml.")}
    if tok:
        lines.append("tokenizer:")
        lines.append(f"  model {tok.get('model', '?')}, pre {tok.get('pre', '?')}, "
                     f"{_count(tok.get('tokens', []))} tokens, {_count(tok.get('merges', []))} merges, "
                     f"bos {tok.get('bos_token_id', '-')}, eos {tok.get('eos_token_id', '-')}, "
                     f"chat template: {'yes' if 'tokenizer.chat_template' in md else 'no'}")
    lines.append(f"tensors: {len(gguf.tensors)}")
    lines.append(f"  {'name':32s} {'type':6s} {'shape (ne)':>16s} {'bytes':>12s}")
    totals = defaultdict(lambda: [0, 0])
    for t in gguf.tensors.values():
        lines.append(f"  {t.name:32s} {type_name(t.type):6s} {str(list(t.ne)):>16s} {t.nbytes:12d}")
        totals[type_name(t.type)][0] += 1
        totals[type_name(t.type)][1] += t.nbytes
    lines.append("totals by type:")
    for name, (count, nbytes) in sorted(totals.items(), key=lambda kv: -kv[1][1]):
        lines.append(f"  {name:6s} {count:4d} tensors {_human_bytes(nbytes):>12s}")
    lines.append(f"  all    {len(gguf.tensors):4d} tensors {_human_bytes(sum(t.nbytes for t in gguf.tensors.values())):>12s}")
    return "\n".join(lines)
