"""The package's shape: no import cycle between modules (function-level imports included; a package __init__'s
re-exports aside) and no module over 600 lines."""

from __future__ import annotations

import ast
import pathlib

import mri_lens

PKG = pathlib.Path(mri_lens.__file__).parent
MAX_LINES = 600


def _modules() -> dict[str, pathlib.Path]:
    root = PKG.parent
    return {".".join(f.relative_to(root).with_suffix("").parts): f for f in PKG.rglob("*.py")}


def _edges(mods: dict[str, pathlib.Path]) -> dict[str, set[str]]:
    """Module -> the mri_lens modules it imports anywhere in its body (``__init__`` files only as targets of
    their submodules: importing a package's names counts as importing nothing in particular)."""
    names = {m[: -len(".__init__")] if m.endswith(".__init__") else m: m for m in mods}
    out = {}
    for mod, path in mods.items():
        if mod.endswith(".__init__"):
            continue
        package = mod.rsplit(".", 1)[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                candidates = [f"{target}.{a.name}" for a in node.names] + [target]
            elif isinstance(node, ast.Import):
                candidates = [a.name for a in node.names]
            else:
                continue
            for c in candidates:
                real = names.get(c)
                if real is not None and not real.endswith(".__init__") and real != mod:
                    deps.add(real)
        out[mod] = deps
    return out


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan), i.e. every import cycle."""
    index, low, on, stack, found = {}, {}, set(), [], []
    counter = [0]

    def visit(v):  # the graph is small (dozens of modules): recursion depth is not a concern
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    mods = _modules()
    edges = _edges(mods)
    assert len(edges) > 20  # the walk found the package's modules
    assert _cycles(edges) == []


def test_the_cycle_check_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_over_600_lines():
    long = {str(p.relative_to(PKG)): n for p in PKG.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}


def test_core_modules_do_not_import_lenses_or_render():
    """Data flows one way: the core (adapter, corpus, capture, scanner, store...) never imports a lens or the
    renderer; the renderer's page shell imports no lens."""
    edges = _edges(_modules())
    core = [m for m in edges if m.count(".") == 1 and m not in ("mri_lens.cli", "mri_lens.pipelines",
                                                                "mri_lens.report")]
    for m in core:
        assert not [d for d in edges[m] if d.startswith(("mri_lens.lenses", "mri_lens.render"))], m
    assert not [d for d in edges["mri_lens.render.html"] if d.startswith("mri_lens.lenses")]


def _private_model_reads(source: str, where: str) -> list[str]:
    """``<something>.adapter.model`` / ``adapter.model`` / ``adapter._x`` reads in one file's source: a lens going
    around the adapter's public methods to the model or the adapter's private state."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Attribute):
            continue
        owner = node.value
        owner_name = (owner.id if isinstance(owner, ast.Name)
                      else owner.attr if isinstance(owner, ast.Attribute) else "")
        if owner_name == "adapter" and (node.attr == "model" or node.attr.startswith("_")):
            found.append(f"{where}:{node.lineno}: adapter.{node.attr}")
    return found


def test_lenses_reach_the_model_only_through_the_adapter():
    """Lenses, the renderer and the pipelines use the adapter's public methods (tokenizer, input_embedding, ...),
    never ``adapter.model`` or the adapter's private fields."""
    files = [p for p in PKG.rglob("*.py")
             if p.relative_to(PKG).parts[0] in ("lenses", "render") or p.name == "pipelines.py"]
    assert len(files) > 10
    hits = [hit for p in files
            for hit in _private_model_reads(p.read_text(encoding="utf-8"), str(p.relative_to(PKG)))]
    assert hits == []


def test_the_adapter_check_finds_reads():
    src = "def f(run, adapter):\n    return run.adapter.model.tokenizer, adapter._prefix, adapter.tokenizer\n"
    assert sorted(_private_model_reads(src, "x.py")) == ["x.py:2: adapter._prefix", "x.py:2: adapter.model"]
