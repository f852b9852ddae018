"""Imports flow one way (docs/design.md): foundations -> ops -> data -> metrics -> train -> the model
families -> the entry points. A module may import its own layer or a lower one, a family no other
family, and an import inside a function or an ``if``/``try`` block states its reason in a comment."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "seisjax"

#: lowest first; a module belongs to the longest prefix listed
LAYERS = (
    ("seisjax.errors", "seisjax.config", "seisjax.malloc"),
    ("seisjax.ops",),
    ("seisjax.data",),
    ("seisjax.metrics",),
    ("seisjax.train",),
    ("seisjax.symae", "seisjax.spectrogram", "seisjax.lstm_ae", "seisjax.dec", "seisjax.conv_ae"),
    ("seisjax.families", "seisjax.bench", "seisjax.cli", "seisjax.__main__", "seisjax"),
)
FAMILIES = LAYERS[5]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _place(module: str) -> tuple[int, str]:
    """(layer, the prefix it matched) of a seisjax module."""
    best = max(((rank, prefix) for rank, prefixes in enumerate(LAYERS) for prefix in prefixes
                if module == prefix or module.startswith(prefix + ".")), key=lambda rp: len(rp[1]))
    return best


def _imports(path: Path):
    """(line, imported seisjax module, nested) for every import in the file; ``nested`` when it is
    not at the module's top level."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    top = set(map(id, tree.body))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            names = [f"{base}.{alias.name}" for alias in node.names]   # each resolves to its module
        else:
            continue
        for name in names:
            if name == "seisjax" or name.startswith("seisjax."):
                yield node.lineno, name, id(node) not in top
        if not any(n == "seisjax" or n.startswith("seisjax.") for n in names):
            yield node.lineno, None, id(node) not in top


def _modules():
    return sorted(PACKAGE.rglob("*.py"))


def _existing(name: str) -> str:
    """The longest prefix of ``name`` that is a module or package of seisjax (``from a.b import c``
    names ``a.b.c``, which may be a function)."""
    parts = name.split(".")
    while parts:
        candidate = PACKAGE.parent.joinpath(*parts)
        if candidate.with_suffix(".py").is_file() or (candidate / "__init__.py").is_file():
            return ".".join(parts)
        parts.pop()
    return name


def test_imports_flow_one_way():
    problems = []
    for path in _modules():
        importer = _module_name(path)
        rank, prefix = _place(importer)
        for line, name, _ in _imports(path):
            if name is None:
                continue
            target = _existing(name)
            if target == "seisjax" and name != "seisjax":
                continue   # `from seisjax import x`: judged by the submodule it names
            other_rank, other_prefix = _place(target)
            where = f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}"
            if other_rank > rank:
                problems.append(f"{where}, a higher layer")
            elif prefix in FAMILIES and other_prefix in FAMILIES and other_prefix != prefix:
                problems.append(f"{where}, another family")
    assert not problems, "\n".join(problems)


def test_nested_imports_state_their_reason():
    problems = []
    for path in _modules():
        lines = path.read_text().splitlines()
        for line, _, nested in _imports(path):
            if not nested:
                continue
            text, above = lines[line - 1], lines[line - 2].strip() if line > 1 else ""
            if "#" not in text and not above.startswith("#"):
                problems.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {text.strip()}")
    assert not problems, "imports below the top level without a reason:\n" + "\n".join(sorted(set(problems)))


@pytest.mark.parametrize("family", [p.rpartition(".")[2] for p in FAMILIES])
def test_every_family_has_the_same_shape(family):
    folder = PACKAGE / family
    missing = [name for name in ("__init__.py", "model.py", "data.py", "task.py", "README.md")
               if not (folder / name).is_file()]
    assert not missing, f"seisjax/{family} lacks {', '.join(missing)}"
