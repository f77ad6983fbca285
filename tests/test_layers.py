"""The package's layers, read from its import statements with `ast` (nothing is imported).

Units are daxjax's top-level modules and folders (a folder's modules and subfolders belong to
it). LAYERS lists them bottom to top: a unit may import units of its own layer or below, never
above. Every import counts, also those inside functions, except under `if TYPE_CHECKING:`. An
import names the module it reaches (`from a.b import c` reaches `a.b.c` when that is a module, else
`a.b`); the package `__init__`s that Python runs on the way are not counted.
"""

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("daxjax", "blackbox_adapters")
MAX_LAYERS = 9

#: Bottom to top. The former flat modules (`daxjax.lime`, ...; `daxjax._MOVED`) are one-line
#: aliases of their new places and sit with the entry points at the top.
LAYERS = (
    {"daxjax._checks", "daxjax.inputs", "daxjax.blackbox", "daxjax.scenes",
     "daxjax.dataset.sources"},                 # reading images: imports nothing of daxjax (SPLIT_UNITS)
    {"daxjax.device"},                          # querying the black box, sharding over devices
    {"daxjax.perturbation"},                    # segments, fills, sampling
    {"daxjax.methods"},                         # the explainers and their contract
    {"daxjax.explain", "daxjax.dataset", "daxjax.amortised"},  # one batch; whole datasets; one explainer for many
    {"daxjax.metrics"},                         # judging maps (sanity checks re-explain)
    {"daxjax.report"},
    {"daxjax.audio", "daxjax.glance"},
    {"daxjax", "daxjax.cli", "daxjax.demo"},    # + the former module names
)


def _module_files() -> dict[str, Path]:
    files = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            files[name] = path
    return files


MODULES = _module_files()


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    return skipped


def imports_of(name: str) -> set[str]:
    """Every module of PACKAGES, or other top-level name (`benchmarks`, ...), that module `name` imports."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(), str(path))
    skipped = _type_checking_nodes(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.add(_reached(alias.name))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else _reached(base))
    return {module for module in found if module and module != name}


def _reached(dotted: str) -> str:
    """The longest prefix of `dotted` that is one of our modules (else its top-level name)."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in MODULES:
            return ".".join(parts[:end])
    return parts[0]


GRAPH = {name: imports_of(name) for name in MODULES}


#: Modules that are a unit of their own, below their folder: `daxjax.dataset.sources` reads images
#: from folders, globs and archives for the pipeline and for `daxjax.amortised.fit`, which the
#: pipeline runs (as a folder unit, dataset <-> amortised would be a cycle).
SPLIT_UNITS = {"daxjax.dataset.sources"}


def unit_of(module: str) -> str:
    if module in SPLIT_UNITS:
        return module
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "daxjax" else parts[0]


def _moved() -> set[str]:
    tree = ast.parse((ROOT / "daxjax" / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "_MOVED":
            return {f"daxjax.{name}" for name in ast.literal_eval(node.value)}
    raise AssertionError("daxjax/__init__.py defines no _MOVED")


def layer_of(unit: str) -> int:
    if unit in _moved():
        return len(LAYERS) - 1
    for index, units in enumerate(LAYERS):
        if unit in units:
            return index
    raise AssertionError(f"{unit} is in none of LAYERS: give it a layer in tests/test_layers.py")


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node, or a node importing itself (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in graph:
                continue
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in graph:
        if node not in index:
            visit(node)
    return found


def unit_graph() -> dict[str, set[str]]:
    units: dict[str, set[str]] = {}
    for module, imported in GRAPH.items():
        if not module.startswith("daxjax"):
            continue
        targets = units.setdefault(unit_of(module), set())
        targets.update(unit_of(m) for m in imported if m.startswith("daxjax") and unit_of(m) != unit_of(module))
    return units


def longest_chain(graph: dict[str, set[str]]) -> list[str]:
    memo: dict[str, list[str]] = {}

    def chain(node):
        if node not in memo:
            below = [chain(other) for other in graph.get(node, ()) if other in graph]
            memo[node] = [node] + max(below, key=len, default=[])
        return memo[node]

    return max((chain(node) for node in graph), key=len)


def test_the_import_graph_is_read():
    # Guards the reader itself: known edges must be found, or every other test here passes vacuously.
    assert "daxjax.methods.dax.engine" in GRAPH["daxjax.explain"] or any(
        m.startswith("daxjax.methods") for m in GRAPH["daxjax.explain"])
    assert "daxjax.device.querying" in GRAPH["daxjax.perturbation.segments"]
    assert "blackbox_adapters.base" in GRAPH["blackbox_adapters.callable"]  # a relative import
    assert "daxjax.dataset.store" in GRAPH["daxjax.report.images"]          # an import inside a function
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert longest_chain({"a": {"b"}, "b": {"c"}, "c": set(), "d": {"c"}}) == ["a", "b", "c"]


def test_no_module_imports_itself_back():
    assert cycles(GRAPH) == []


def test_no_layer_imports_a_layer_above_it():
    upward = []
    for module, imported in sorted(GRAPH.items()):
        if not module.startswith("daxjax"):
            continue
        for other in sorted(imported):
            if other.startswith("daxjax") and layer_of(unit_of(other)) > layer_of(unit_of(module)):
                upward.append(f"{module} -> {other}")
    assert upward == []


def test_units_form_no_cycle_and_at_most_nine_layers():
    graph = unit_graph()
    assert cycles(graph) == []
    chain = longest_chain(graph)
    assert len(LAYERS) <= MAX_LAYERS
    assert len(chain) <= MAX_LAYERS, " -> ".join(chain)


def test_the_package_never_imports_the_repository_around_it():
    outside = {f"{module} -> {other}" for module, imported in GRAPH.items() for other in imported
               if other.split(".")[0] in ("benchmarks", "tests", "tools")}
    assert outside == set()


def test_glance_is_imported_by_no_other_part_of_daxjax():
    users = {module for module, imported in GRAPH.items()
             if not module.startswith("daxjax.glance") and any(m.startswith("daxjax.glance") for m in imported)}
    assert users == set()


@pytest.mark.parametrize("folder", sorted(p.parent.relative_to(ROOT).as_posix()
                                          for package in PACKAGES for p in (ROOT / package).rglob("__init__.py")
                                          if p.parent != ROOT / package and p.parent.name != "models"))
def test_every_folder_says_what_lives_there(folder):
    init = ROOT / folder / "__init__.py"
    doc = ast.get_docstring(ast.parse(init.read_text())) or ""
    members = sorted(p.stem for p in (ROOT / folder).glob("*.py") if p.name != "__init__.py") + sorted(
        p.name for p in (ROOT / folder).iterdir() if (p / "__init__.py").is_file())
    missing = [m for m in members if m not in doc]
    assert doc and missing == [], f"{folder}/__init__.py's docstring does not name {missing}"


def test_the_former_module_names_still_import_as_the_moved_modules():
    import importlib

    import daxjax

    for name in sorted(_moved()):
        module = importlib.import_module(name)
        assert module.__name__ != name and module.__name__.startswith("daxjax."), name  # the moved module itself
        assert getattr(daxjax, name.rpartition(".")[2]) is module
    from daxjax.dax import DAXConfig as old
    from daxjax.methods.dax.config import DAXConfig as new
    assert old is new


def test_the_adapters_are_reachable_as_daxjax_blackbox():
    import blackbox_adapters
    import daxjax.blackbox

    assert set(blackbox_adapters.__all__) >= {"BlackBox", "CallableBlackBox", "OnnxBlackBox", "as_blackbox"}
    for name in blackbox_adapters.__all__:
        assert getattr(daxjax.blackbox, name) is getattr(blackbox_adapters, name)
    wrapped = daxjax.blackbox.as_blackbox(lambda x: x.reshape(len(x), -1)[:, :2], num_classes=2)
    assert isinstance(wrapped, daxjax.blackbox.CallableBlackBox)
