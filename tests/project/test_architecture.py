"""featinv's package structure, read from the source with ast: layers import only downwards,
modules import each other without a circle, modules stay small, package ``__init__`` files are
only a docstring (so ``import featinv`` stays light)."""
import ast
from pathlib import Path

import featinv

PACKAGE = Path(featinv.__file__).parent
# lowest first: a module may import its own layer (without a circle) and the layers below it
LAYERS = ("base", "io", "representation", "features", "decoders", "inversion", "datasets",
          "analysis", "training", "cli", "api")
# top-level modules above the base: the public API (package root, ``python -m featinv``) and the
# contract test suite for plugin authors, which builds decoders
TOP_LEVEL_API = {"featinv", "featinv.__main__", "featinv.testing"}
MAX_LINES = 400


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> str:
    """``featinv.<package>.<module>`` -> its package; a top-level module -> ``base`` (or ``api``)."""
    if module in TOP_LEVEL_API:
        return "api"
    parts = module.split(".")
    if len(parts) == 2 and not (PACKAGE / parts[1]).is_dir():
        return "base"
    assert parts[1] in LAYERS, f"{module}: package {parts[1]!r} has no place in LAYERS"
    return parts[1]


def import_graph() -> dict[str, set[str]]:
    """featinv module -> the featinv modules it imports, anywhere in its source (function-level
    imports included, relative or absolute). A module's own (sub-)package is left out (Python
    imports a package before its modules anyway), but never the root ``featinv``: importing the
    public API from inside is an import of the top layer."""
    found = modules()
    graph = {}
    for name, path in found.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = (".".join(package[:len(package) - node.level + 1] + [node.module or ""])
                        .rstrip(".") if node.level else node.module)
                deps.update(f"{base}.{a.name}" if f"{base}.{a.name}" in found else base
                            for a in node.names)
        graph[name] = {d for d in deps if d in found and d != name
                       and (d == "featinv" or not name.startswith(d + "."))}
    return graph


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{m} ({layer(m)}) imports {d} ({layer(d)})" for m, deps in graph.items()
                  for d in deps if LAYERS.index(layer(d)) > LAYERS.index(layer(m)))


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_is_read():
    graph = import_graph()
    assert "featinv.errors" in graph["featinv.representation.plugins"]
    assert "featinv.decoders.networks" in graph["featinv.decoders.builder"]  # function-level
    assert "featinv.io.checkpoint" in graph["featinv.inversion.load"]  # from ..io import checkpoint
    assert "featinv.features.vlfeat" in graph["featinv.features.hog"]  # from . import vlfeat


def test_every_module_has_a_layer():
    assert {layer(m) for m in modules()} == set(LAYERS)


def test_the_checks_catch_violations():
    graph = {"featinv.errors": {"featinv.cli.main"}, "featinv.cli.main": {"featinv.errors"},
             "featinv.io.images": {"featinv"}, "featinv": set()}
    assert upward_imports(graph) == [
        "featinv.errors (base) imports featinv.cli.main (cli)",
        "featinv.io.images (io) imports featinv (api)"]
    assert cycles(graph) == [{"featinv.errors", "featinv.cli.main"}]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]


def test_layers_import_only_downwards():
    found = upward_imports(import_graph())
    assert not found, "imports from a lower layer to a higher one:\n" + "\n".join(found)


def test_no_import_cycle():
    found = cycles(import_graph())
    assert not found, f"import cycles among featinv modules: {found}"


def test_no_module_is_too_long():
    long = {m: n for m, p in modules().items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them by purpose): {long}"


def test_package_inits_are_a_docstring_only():
    for name, path in modules().items():
        if path.name != "__init__.py" or name == "featinv":
            continue
        tree = ast.parse(path.read_text())
        assert ast.get_docstring(tree), f"{path}: say in a docstring what lives in the package"
        imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
        assert not imports, f"{path} imports: a package __init__ must stay free of imports"


def test_plugin_machinery_does_not_import_decoders():
    graph = import_graph()
    for module in ("featinv.representation.plugins", "featinv.representation.registry"):
        assert not {d for d in graph[module] if d.startswith("featinv.decoders")}


def test_decoder_families_are_one_table():
    from featinv.choices import DECODER_FAMILIES
    from featinv.decoders.networks import BODIES
    from featinv.representation.spec import FAMILY_CHOICES as ACCEPTED

    assert set(BODIES) == set(DECODER_FAMILIES)
    assert ACCEPTED == ("auto", *DECODER_FAMILIES)
