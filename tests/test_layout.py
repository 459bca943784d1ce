"""The package's shape: no import cycle between modules (function-level imports included; a package __init__'s
re-exports aside), no ``_private`` name imported across packages, no module over 500 lines, no function over 80
lines (a declarative argparse builder aside), the core below the lenses and the lenses on the adapter's public
methods."""

from __future__ import annotations

import ast
import pathlib

import mri_lens

PKG = pathlib.Path(mri_lens.__file__).parent
MAX_LINES = 500
MAX_FUNCTION_LINES = 80
TOP_LEVEL = ("cli", "pipelines", "errors", "version")  # the modules of the package ``mri_lens`` itself
CORE = ("mri_lens.errors", "mri_lens.model", "mri_lens.data", "mri_lens.scanning", "mri_lens.results",
        "mri_lens.storage")


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


def _package(module: str) -> str:
    """The package a module belongs to: ``mri_lens.<x>`` for a subpackage's modules (its own ``__init__``
    included, nested folders such as ``model.bundled`` too), ``mri_lens.lenses.<x>`` for a lens, ``mri_lens`` for
    the top-level modules (``cli``, ``pipelines``, ``errors``, ``version``, the package ``__init__``)."""
    parts = module.split(".")
    if parts[-1] == "__init__":
        parts = parts[:-1]
    if len(parts) <= 2 and (len(parts) == 1 or parts[1] in TOP_LEVEL or not (PKG / parts[1]).is_dir()):
        return "mri_lens"
    if parts[1] == "lenses" and len(parts) >= 3:
        return ".".join(parts[:3])
    return ".".join(parts[:2])


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _private_imports(source: str, module: str) -> list[str]:
    """``module``'s imports (anywhere in its body) of a ``_private`` name or through a ``_private`` module of
    another package: ``"module:line: target.name"`` for each (a package's module is named ``<package>.__init__``,
    as :func:`_modules` names it)."""
    own = _package(module)
    base_parts = module.split(".")[:-1]  # a relative import starts from the module's package
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = base_parts[: len(base_parts) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            pairs = [(target, a.name) for a in node.names]
        elif isinstance(node, ast.Import):
            pairs = [(a.name.rsplit(".", 1)[0], a.name.rsplit(".", 1)[-1]) if "." in a.name else (a.name, "")
                     for a in node.names]
        else:
            continue
        for target, name in pairs:
            if target.split(".")[0] != "mri_lens":
                continue
            path = target.split(".")[1:]
            if not (_is_private(name) or any(_is_private(p) for p in path)):
                continue
            # the package of what is imported: ``name`` is a module when the target is a package (``from . import
            # _stats``), a package of its own when it names one (``from .. import _x`` is ``mri_lens``'s name)
            target_module = f"{target}.{name}" if (PKG.parent / target.replace(".", "/") / name).is_dir() or \
                (PKG.parent / target.replace(".", "/") / f"{name}.py").is_file() else target
            if (PKG.parent / target_module.replace(".", "/")).is_dir():
                target_module += ".__init__"
            if _package(target_module) != own:
                found.append(f"{module}:{node.lineno}: {target}.{name}")
    return found


def test_no_private_import_across_packages():
    """A ``_private`` name (or a name reached through a ``_private`` module) is imported only inside its own
    package: across packages the public names are the interface."""
    mods = _modules()
    hits = [hit for mod, path in mods.items()
            for hit in _private_imports(path.read_text(encoding="utf-8"), mod)]
    assert hits == []


def test_the_private_import_check_finds_imports():
    assert _package("mri_lens.cli") == _package("mri_lens.version") == _package("mri_lens.__init__") == "mri_lens"
    assert _package("mri_lens.storage.__init__") == _package("mri_lens.storage.files") == "mri_lens.storage"
    assert _package("mri_lens.model.bundled.tiny") == "mri_lens.model"
    assert _package("mri_lens.lenses.mri.regions") == _package("mri_lens.lenses.mri.__init__") == "mri_lens.lenses.mri"
    assert _package("mri_lens.lenses.__init__") == "mri_lens.lenses"
    src = ("from ...storage.files import _RUN_RE, MANIFEST\n"  # another package's private name
           "from ..mri._stats import bh\n"  # through another lens's private module
           "from ... import _version\n"  # mri_lens's private module
           "from . import _helpers\n"  # its own package's: fine
           "from .neighbour import _ok\n"  # its own package's: fine
           "from ...storage.files import MANIFEST\n"  # public: fine
           "def f():\n    from mri_lens.model.loading import _version\n    import mri_lens.lenses.mri._stats\n")
    assert _private_imports(src, "mri_lens.lenses.n2g.fit") == [
        "mri_lens.lenses.n2g.fit:1: mri_lens.storage.files._RUN_RE",
        "mri_lens.lenses.n2g.fit:2: mri_lens.lenses.mri._stats.bh",
        "mri_lens.lenses.n2g.fit:3: mri_lens._version",
        "mri_lens.lenses.n2g.fit:8: mri_lens.model.loading._version",
        "mri_lens.lenses.n2g.fit:9: mri_lens.lenses.mri._stats",
    ]
    assert _private_imports("from .._version import __version__\n", "mri_lens.storage.write") == [
        "mri_lens.storage.write:1: mri_lens._version.__version__"]
    assert _private_imports("from ._version import __version__\n", "mri_lens.__init__") == []
    assert _private_imports("from ._stats import _bh\n", "mri_lens.lenses.mri.compare") == []


def test_no_module_over_500_lines():
    long = {str(p.relative_to(PKG)): n for p in PKG.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}


def _long_functions(source: str, where: str, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """Functions and methods (nested ones too) of more than ``limit`` lines, decorators excluded, docstring
    included; an argparse builder (a name containing "parser") may stay long."""
    return [f"{where}:{node.lineno}: {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for node in ast.walk(ast.parse(source))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and "parser" not in node.name
            and node.end_lineno - node.lineno + 1 > limit]


def test_no_function_over_80_lines():
    long = [hit for p in PKG.rglob("*.py")
            for hit in _long_functions(p.read_text(encoding="utf-8"), str(p.relative_to(PKG)))]
    assert long == []


def test_the_function_check_finds_long_functions():
    def function(name: str, lines: int, indent: str = "") -> str:  # ``lines`` lines in all, the def included
        return f"{indent}def {name}():\n" + "".join(f"{indent}    x = {i}\n" for i in range(lines - 1))

    src = function("short", 80) + function("long", 81) + "class A:\n" + function("method", 90, "    ") + \
        function("build_parser", 200)
    assert _long_functions(src, "x.py") == ["x.py:81: long (81 lines)", "x.py:163: method (90 lines)"]


def test_core_does_not_import_lenses_or_render():
    """Data flows one way: the core (model, data, scanning, results, storage, errors) never imports a lens, the
    renderer, the pipelines or the CLI; the renderer's page shell imports no lens."""
    edges = _edges(_modules())
    core = [m for m in edges if m.startswith(CORE)]
    assert len(core) > 15
    upper = ("mri_lens.lenses", "mri_lens.render", "mri_lens.pipelines", "mri_lens.cli")
    assert {m: d for m in core if (d := sorted(x for x in edges[m] if x.startswith(upper)))} == {}
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
