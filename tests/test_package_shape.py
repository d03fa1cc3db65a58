"""The package's shape: no import circles, modules of a readable size, public APIs of dependencies only.

Everything here reads source with ``ast`` (nothing is imported, so no import side effects and no order effects). The
import graph has every ``import``/``from ... import`` of the package into itself: at module level, inside functions,
under ``if TYPE_CHECKING:`` (a circle that only typing keeps is still a circle in the design), relative and absolute.

The allow-lists below are debts with a reason each, not exemptions: every entry must still be true (a cycle still
there, a module still too long, an import still present), so an entry that is paid off fails the test until it is
removed, and the lists only shrink.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "scicat_fw_ingest"
MAX_LINES = 400

#: Import circles still to break, as the set of modules in the circle -> why it is still here.
KNOWN_CYCLES: dict[frozenset[str], str] = {}

#: Modules over MAX_LINES still to split -> why.
LONG_MODULES: dict[str, str] = {}

#: test modules that still import another test module (``tests.*`` other than conftest) -> why. Builders that tests
#: share live in scicat_fw_ingest.testing, so this stays empty.
TEST_IMPORTS_OF_TESTS: dict[str, str] = {}


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    tree: ast.Module
    lines: int

    @property
    def is_package(self) -> bool:
        return self.path.name == "__init__.py"


def _modules(top: str) -> dict[str, Module]:
    found = {}
    for path in sorted((ROOT / top).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        source = path.read_text(encoding="utf-8")
        name = ".".join(parts)
        found[name] = Module(name, path, ast.parse(source, filename=str(path)), len(source.splitlines()))
    return found


MODULES = _modules(PACKAGE)


def _imported_names(module: Module) -> Iterator[tuple[str, list[str]]]:
    """Per import statement and imported name: the absolute name (``X`` or ``X.y``) and the fall-backs to try.

    ``from X import y`` gives ``("X.y", ["X.y", "X"])``: ``y`` is a module when ``X.y`` is one, else a name in ``X``.
    """
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                yield alias.name, [".".join(parts[:i]) for i in range(len(parts), 0, -1)]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = module.name if module.is_package else module.name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{node.module}" if node.module else package
            else:
                base = node.module or ""
            for alias in node.names:
                full = f"{base}.{alias.name}" if base else alias.name
                yield full, [full, base]


def _import_graph(modules: dict[str, Module]) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (``from pkg import mod`` is an edge to ``pkg.mod``, not ``pkg``)."""
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for module in modules.values():
        for _, candidates in _imported_names(module):
            target = next((name for name in candidates if name in modules), None)
            if target is not None and target != module.name:
                graph[module.name].add(target)
    return graph


def _strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's strongly connected components with more than one module (every import circle is inside one)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def _one_cycle(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A concrete circle through the component's first module, for the failure message (a -> b -> a)."""
    start = min(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(graph[node] & component):
            if nxt == start:
                return [*paths[node], start]
            if nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                queue.append(nxt)
    return sorted(component)


def test_the_walk_sees_the_whole_package_and_its_lazy_imports() -> None:
    graph = _import_graph(MODULES)
    assert len(MODULES) > 100
    # relative imports at module level, inside a function (cli.main imports the fast decode path when it runs) and
    # under TYPE_CHECKING are all edges
    assert "scicat_fw_ingest.mapping._paths" in graph["scicat_fw_ingest.mapping._lookups"]
    assert "scicat_fw_ingest.cli._decode_fast" in graph["scicat_fw_ingest.cli"]
    assert "scicat_fw_ingest.mapping._lookups" in graph["scicat_fw_ingest.mapping.sources"]
    # `from package import module` is an edge to the module
    assert "scicat_fw_ingest.fbschemas" in graph["scicat_fw_ingest.messages"]


def test_imports_resolve_to_the_module_they_name() -> None:
    def module(name: str, source: str, package: bool = False) -> Module:
        path = ROOT / "p" / ("__init__.py" if package else f"{name.rsplit('.', 1)[-1]}.py")
        return Module(name, path, ast.parse(source), 1)

    modules = {m.name: m for m in [
        module("p", "from . import a\n", package=True),
        module("p.a", "import p.b\ndef f():\n    from p.sub import c\n"),
        module("p.b", "from .a import thing\nfrom . import sub\n"),
        module("p.sub", "", package=True),
        module("p.sub.c", "from ..a import f\nimport os\n"),
    ]}
    graph = _import_graph(modules)
    assert graph == {"p": {"p.a"}, "p.a": {"p.b", "p.sub.c"}, "p.b": {"p.a", "p.sub"}, "p.sub": set(),
                     "p.sub.c": {"p.a"}}


def test_the_cycle_finder_finds_a_circle_and_names_it() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    (component,) = _strongly_connected(graph)
    assert component == {"a", "b", "c"}
    assert _one_cycle(graph, component) == ["a", "b", "c", "a"]
    assert _strongly_connected({"a": {"b"}, "b": set()}) == []


def test_no_import_circles() -> None:
    graph = _import_graph(MODULES)
    components = _strongly_connected(graph)
    unknown = [" -> ".join(_one_cycle(graph, c)) for c in components if frozenset(c) not in KNOWN_CYCLES]
    assert not unknown, "import circles in the package:\n  " + "\n  ".join(unknown)
    stale = [sorted(c) for c in KNOWN_CYCLES if set(c) not in components]
    assert not stale, f"KNOWN_CYCLES entries that are no longer circles (remove them): {stale}"


def test_modules_stay_readable_in_size() -> None:
    too_long = {name: m.lines for name, m in MODULES.items() if m.lines > MAX_LINES and name not in LONG_MODULES}
    assert not too_long, f"modules over {MAX_LINES} lines (split them): {too_long}"
    stale = [name for name in LONG_MODULES if name not in MODULES or MODULES[name].lines <= MAX_LINES]
    assert not stale, f"LONG_MODULES entries now within {MAX_LINES} lines or gone (remove them): {stale}"


def _private_dependency_imports(module: Module) -> Iterator[str]:
    """``from X._y ...``/``import X._y`` for X other than this package (or bench, tests): a dependency's internals."""
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            top, *rest = name.split(".")
            if top not in (PACKAGE, "bench", "tests") and any(part.startswith("_") for part in rest):
                yield f"{module.path.relative_to(ROOT)}:{node.lineno}: {name}"


def test_only_public_modules_of_dependencies_are_imported() -> None:
    found = [hit for top in (PACKAGE, "bench", "tests") for m in _modules(top).values()
             for hit in _private_dependency_imports(m)]
    assert not found, "imports of private modules of dependencies (use their public API):\n  " + "\n  ".join(found)


def test_the_private_import_check_catches_typer_internals() -> None:
    tree = ast.parse("import typer._click\nfrom typer._coercion import x\nfrom scicat_fw_ingest._time import y\n")
    hits = list(_private_dependency_imports(Module("scicat_fw_ingest.x", ROOT / "x.py", tree, 3)))
    assert [h.split(": ", 1)[1] for h in hits] == ["typer._click", "typer._coercion"]


def test_bench_imports_nothing_from_tests() -> None:
    bench = _modules("bench")
    offenders = sorted({name for name, m in bench.items()
                        for imported, _ in _imported_names(m) if imported.split(".")[0] == "tests"})
    assert not offenders, f"bench modules importing from tests/ (use scicat_fw_ingest.testing): {offenders}"


def _test_module_imports(tests: dict[str, Module]) -> dict[str, set[str]]:
    """Test module -> the other test modules it imports (conftest aside: pytest loads it, it is not a library)."""
    found: dict[str, set[str]] = {}
    for module in tests.values():
        for _, candidates in _imported_names(module):
            target = next((name for name in candidates if name in tests), None)
            if target is not None and target != module.name and target.rpartition(".")[2] != "conftest":
                found.setdefault(module.name, set()).add(target)
    return found


def test_test_modules_import_the_package_never_each_other() -> None:
    offenders = _test_module_imports(_modules("tests"))
    unknown = {name: sorted(targets) for name, targets in offenders.items() if name not in TEST_IMPORTS_OF_TESTS}
    assert not unknown, ("test modules importing other test modules (move the shared builder to "
                         f"scicat_fw_ingest.testing): {unknown}")
    stale = sorted(set(TEST_IMPORTS_OF_TESTS) - set(offenders))
    assert not stale, f"TEST_IMPORTS_OF_TESTS entries that no longer import a test module (remove them): {stale}"


def test_the_test_import_check_sees_relative_absolute_and_lazy_imports() -> None:
    def module(name: str, source: str, package: bool = False) -> Module:
        path = ROOT / "t" / ("__init__.py" if package else f"{name.rsplit('.', 1)[-1]}.py")
        return Module(name, path, ast.parse(source), 1)

    tests = {m.name: m for m in [
        module("tests", "", package=True),
        module("tests.conftest", ""),
        module("tests.a", "", package=True),
        module("tests.a.test_x", "from .test_y import helper\nfrom ..conftest import run\n"),
        module("tests.a.test_y", "def f():\n    from tests.b.test_z import z\n"),
        module("tests.b.test_z", "from scicat_fw_ingest.testing.dry_run import dry\nimport tests.a.test_x\n"),
    ]}
    assert _test_module_imports(tests) == {"tests.a.test_x": {"tests.a.test_y"}, "tests.a.test_y": {"tests.b.test_z"},
                                           "tests.b.test_z": {"tests.a.test_x"}}


def test_the_gates_exceptions_name_existing_files_only() -> None:
    """The lint gate's lists of files still being fixed (pyproject) name real files and modules, so a file that is
    renamed or moved cannot keep an exception alive under a name nobody sees."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    ruff_files = config["tool"]["ruff"]["lint"].get("per-file-ignores", {})
    missing = [name for name in ruff_files if not (ROOT / name).is_file()]
    assert not missing, f"[tool.ruff.lint.per-file-ignores] names files that do not exist: {missing}"
    known = {**MODULES, **_modules("tests"), **_modules("bench")}
    ignored = [name for override in config["tool"]["mypy"]["overrides"] if override.get("ignore_errors")
               for name in override["module"]]
    assert not [name for name in ignored if name.endswith("*")], "ignore_errors only for named modules, no patterns"
    unknown = [name for name in ignored if name not in known]
    assert not unknown, f"mypy ignore_errors names modules that do not exist: {unknown}"
