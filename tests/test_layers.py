"""The import structure of ``backend/`` and ``momask_blender/``, read from the source (nothing imported).

Every import counts, module-level and function-local alike: a function-local import hides a cycle
from Python at import time, not from the design. Rules (docs/architecture.md):

* no import cycles;
* each module imports only from its own layer or the layers below (:data:`LAYERS`), and only the
  third-party packages its layer may use (:data:`THIRD_PARTY`);
* the add-on reaches the backend only through ``client.load_backend_module`` of a file in
  ``backend/portable/``, and ``backend/portable`` imports nothing from the ``backend`` package (both
  processes load those files by path);
* no ``_private`` name of one module is used by another.

Failures name ``file:line`` and the rule.
"""

from __future__ import annotations

import ast
import dataclasses
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("backend", "momask_blender")

#: Layers, lowest first. A module may import from its own layer and those below. ``pkg.*`` is the
#: package and everything in it; a plain name is that module alone. The most specific entry wins.
LAYERS: tuple[tuple[str, ...], ...] = (
    # backend: what both processes load by path, then numpy-only motion and retargeting (no torch),
    # then the torch stack, then the process and the command line
    ("backend", "backend.portable.*"),
    ("backend.motion.*",),
    ("backend.retarget.*",),
    ("backend.weights.torch_files",),  # reading torch files safely: below the models, which read CLIP with it
    ("backend.models.*",),
    ("backend.weights.*",),
    ("backend.inference.*",),
    ("backend.doctor",),  # the checks that `serve` (diagnose) and the `doctor` command both run
    ("backend.service.*",),
    ("backend.cli", "backend.__main__"),
    # add-on: stdlib-only process control, the add-on's user folder and the installs, then writing animation,
    # then jobs (which check and write armatures), then the UI, then registration and headless runs
    ("momask_blender.remote.client", "momask_blender.user_folder", "momask_blender.install.*"),
    ("momask_blender.anim.*",),
    ("momask_blender.remote.*",),
    ("momask_blender.ui.*",),
    ("momask_blender", "momask_blender.headless"),
)

#: Third-party packages a layer may not import (stdlib and first-party are checked elsewhere).
THIRD_PARTY: dict[str, tuple[str, ...]] = {
    "backend.portable.*": ("torch", "clip", "scipy", "bpy", "mathutils"),  # stdlib + numpy, for both
    "backend.retarget.*": ("torch", "clip", "bpy", "mathutils"),  # numpy (+ scipy): runs without torch
    "momask_blender.*": ("torch", "clip", "scipy"),  # Blender's Python has bpy + numpy only
}

#: The files `load_backend_module` may load (backend/portable/<name>.py).
PORTABLE = "backend.portable"

#: Violations to be fixed, each with why it is still here: (rule, "module -> imported module" or
#: "module: name"). Empty: keep it so.
ALLOWED: set[tuple[str, str]] = set()


def portable_dependencies(client: Path = ROOT / "momask_blender" / "remote" / "client.py"
                          ) -> dict[str, tuple[str, ...]]:
    """``client.SHARED_BACKEND_MODULES``: each portable module and the portable modules it imports,
    which the add-on's loader loads first (read from the source, not imported: it is Blender code)."""
    for node in ast.walk(ast.parse(client.read_text())):
        target = node.target if isinstance(node, ast.AnnAssign) else \
            (node.targets[0] if isinstance(node, ast.Assign) else None)
        if isinstance(target, ast.Name) and target.id == "SHARED_BACKEND_MODULES" and node.value is not None:
            return ast.literal_eval(node.value)
    raise AssertionError(f"{client} defines no SHARED_BACKEND_MODULES")


@dataclasses.dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the first-party module it imports
    names: tuple[str, ...]  # what ``from target import ...`` takes (empty for a plain import)
    path: Path
    line: int
    local: bool  # inside a function
    loaded_by_path: bool = False  # ``load_backend_module("name")``

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


@dataclasses.dataclass(frozen=True)
class PrivateUse:
    source: str
    target: str
    name: str
    path: Path
    line: int

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """``{module name: file}`` for every module of :data:`PACKAGES`."""
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _function_nodes(tree: ast.AST) -> set[int]:
    """ids of the nodes that sit inside a function body."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            inside.update(id(n) for n in ast.walk(node) if n is not node)
    return inside


def _base_of(module: str, path: Path, level: int, name: str | None) -> str:
    """The absolute module a (possibly relative) ``from`` names."""
    if level == 0:
        return name or ""
    package = module if _is_package(path) else module.rpartition(".")[0]
    for _ in range(level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{name}" if name else package


def _first_party(name: str, modules: dict[str, Path]) -> str | None:
    """``name`` or its longest prefix that is a first-party module (``backend.x.f`` → ``backend.x``)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _loaded_name(call: ast.expr) -> str | None:
    """``name`` of a ``load_backend_module("name")`` / ``client.load_backend_module("name")`` call."""
    if not isinstance(call, ast.Call) or not call.args or not isinstance(call.args[0], ast.Constant):
        return None
    func = call.func
    called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    return str(call.args[0].value) if called == "load_backend_module" else None


def scan(module: str, path: Path, modules: dict[str, Path]) -> tuple[list[Import], list[PrivateUse],
                                                                   list[tuple[str, int, bool]]]:
    """A module's first-party imports, the private names it uses from other modules, and its
    other imports (top-level package, line, inside a function)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    local = _function_nodes(tree)
    imports: list[Import] = []
    third_party: list[tuple[str, int, bool]] = []
    bound: dict[str, str] = {}  # a name in this file → the first-party module it holds

    def add(target: str, names: tuple[str, ...], node: ast.AST, by_path: bool = False) -> None:
        imports.append(Import(module, target, names, path, node.lineno, id(node) in local, by_path))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _first_party(alias.name, modules)
                if target is None:
                    third_party.append((alias.name.partition(".")[0], node.lineno, id(node) in local))
                    continue
                add(target, (), node)
                bound[alias.asname or alias.name.partition(".")[0]] = (
                    target if alias.asname else alias.name.partition(".")[0])
        elif isinstance(node, ast.ImportFrom):
            base = _base_of(module, path, node.level, node.module)
            if node.level == 0 and _first_party(base, modules) is None:
                if base != "__future__":
                    third_party.append((base.partition(".")[0], node.lineno, id(node) in local))
                continue
            taken = []
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                if submodule in modules:
                    add(submodule, (), node)
                    bound[alias.asname or alias.name] = submodule
                else:
                    taken.append(alias.name)
            if taken:
                add(_first_party(base, modules) or base, tuple(taken), node)
        elif isinstance(node, ast.Assign) and (name := _loaded_name(node.value)) is not None:
            add(f"{PORTABLE}.{name}", (), node, by_path=True)
            for target in node.targets:
                if isinstance(target, ast.Name):
                    bound[target.id] = f"{PORTABLE}.{name}"
        elif isinstance(node, ast.Call) and (name := _loaded_name(node)) is not None:
            add(f"{PORTABLE}.{name}", (), node, by_path=True)

    private = [PrivateUse(module, imp.target, name, path, imp.line)
               for imp in imports for name in imp.names if _private(name)]
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in bound and _private(node.attr)):
            private.append(PrivateUse(module, bound[node.value.id], node.attr, path, node.lineno))
    # a call's import was also seen as part of its assignment
    unique = {(i.target, i.line, i.names, i.loaded_by_path): i for i in imports}
    return list(unique.values()), private, third_party


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


@dataclasses.dataclass
class Structure:
    modules: dict[str, Path]
    imports: list[Import]
    private: list[PrivateUse]
    third_party: dict[str, list[tuple[str, int, bool]]]  # stdlib included

    def edges(self) -> dict[str, set[str]]:
        graph: dict[str, set[str]] = {m: set() for m in self.modules}
        for imp in self.imports:
            if imp.target != imp.source and imp.target in self.modules:
                graph[imp.source].add(imp.target)
        return graph


def read_structure(root: Path = ROOT) -> Structure:
    modules = module_files(root)
    imports, private, third = [], [], {}
    for module, path in modules.items():
        found, used, outside = scan(module, path, modules)
        imports += found
        private += [p for p in used if p.target != module]
        third[module] = outside
    return Structure(modules, imports, private, third)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _matches(module: str, entry: str) -> bool:
    if entry.endswith(".*"):
        package = entry[:-2]
        return module == package or module.startswith(package + ".")
    return module == entry


def _specificity(entry: str) -> tuple[int, int]:
    return (entry.count("."), 0 if entry.endswith(".*") else 1)


def layer_of(module: str) -> int | None:
    best: tuple[tuple[int, int], int] | None = None
    for rank, layer in enumerate(LAYERS):
        for entry in layer:
            if _matches(module, entry) and (best is None or _specificity(entry) > best[0]):
                best = (_specificity(entry), rank)
    return best[1] if best else None


def _rule_for(module: str, table: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    entries = [e for e in table if _matches(module, e)]
    return table[max(entries, key=_specificity)] if entries else ()


def violations(structure: Structure) -> Iterable[tuple[str, str, str]]:
    """(rule, allow-list key, message) for every broken rule."""
    graph = structure.edges()
    for component in cycles(graph):
        members = set(component)
        lines = [f"{i.where} ({i.source} -> {i.target})" for i in structure.imports
                 if i.source in members and i.target in members and i.target != i.source]
        yield ("cycle", " <-> ".join(component),
               f"import cycle {' <-> '.join(component)}; move what they share into a lower module:\n    "
               + "\n    ".join(sorted(lines)))
    for imp in structure.imports:
        key = f"{imp.source} -> {imp.target}"
        if imp.source.startswith("momask_blender") and imp.target.startswith("backend"):
            if not imp.loaded_by_path:
                yield ("addon-imports-backend", key, f"{imp.where}: the add-on imports {imp.target}; load "
                       "backend/portable files with client.load_backend_module instead")
            elif imp.target.rpartition(".")[0] != PORTABLE or imp.target not in structure.modules:
                yield ("addon-loads-non-portable", key, f"{imp.where}: load_backend_module loads "
                       f"{imp.target}, which is not a file in backend/portable/")
            continue
        if imp.source.startswith(PORTABLE + ".") and imp.target != imp.source:
            # A portable module may import a sibling the add-on's loader declares as its dependency
            # (loaded first by path, under the name the module's fallback import looks up).
            package, _, target = imp.target.rpartition(".")
            declared = portable_dependencies().get(imp.source.rpartition(".")[2], ())
            if package == PORTABLE and target in declared:
                continue
            yield ("portable-imports-backend", key, f"{imp.where}: {imp.source} imports {imp.target}; "
                   "backend/portable files are loaded by path and may import nothing of the backend")
            continue
        if imp.source.partition(".")[0] != imp.target.partition(".")[0]:
            yield ("backend-imports-addon", key, f"{imp.where}: {imp.source} imports {imp.target}")
            continue
        low, high = layer_of(imp.target), layer_of(imp.source)
        if low is None or high is None:
            missing = imp.target if low is None else imp.source
            yield ("undeclared", missing, f"{imp.where}: {missing} is in no layer; add it to LAYERS "
                   "in tests/test_layers.py")
        elif low > high:
            yield ("layer", key, f"{imp.where}: {imp.source} (layer {LAYERS[high]}) imports "
                   f"{imp.target} from a higher layer ({LAYERS[low]}); move what it needs down")
    for module, outside in structure.third_party.items():
        banned = _rule_for(module, THIRD_PARTY)
        for package, line, _ in outside:
            if package in banned:
                path = structure.modules[module].relative_to(ROOT)
                yield ("third-party", f"{module} -> {package}",
                       f"{path}:{line}: {module} imports {package}, which its layer may not use")
    for use in structure.private:
        yield ("private", f"{use.source}: {use.target}.{use.name}",
               f"{use.where}: {use.source} uses {use.target}.{use.name}, a private name of another "
               "module; make it a public helper or move it to where it is used")


@pytest.fixture(scope="module")
def structure() -> Structure:
    return read_structure()


@pytest.mark.parametrize("rule", ["cycle", "layer", "undeclared", "addon-imports-backend",
                                  "addon-loads-non-portable", "portable-imports-backend",
                                  "backend-imports-addon", "third-party", "private"])
def test_import_rules(structure, rule):
    broken = [message for kind, key, message in violations(structure)
              if kind == rule and (kind, key) not in ALLOWED]
    assert not broken, f"{len(broken)} broken ({rule}):\n" + "\n".join(broken)


def test_allow_list_holds_only_live_violations(structure):
    """An entry that no longer matches anything is removed, so the list only shrinks."""
    live = {(kind, key) for kind, key, _ in violations(structure)}
    assert not ALLOWED - live, f"stale ALLOWED entries, remove them: {sorted(ALLOWED - live)}"


def test_the_reader_sees_function_local_imports_cycles_and_private_names(tmp_path):
    """The checks above can fail: a tiny tree with a hidden cycle, a private import and a layer breach."""
    package = tmp_path / "backend"
    (package / "portable").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "portable" / "__init__.py").write_text("")
    (package / "portable" / "a.py").write_text("def f():\n    from backend.portable import b\n")
    (package / "portable" / "b.py").write_text("from .a import _hidden\n")
    (package / "motion").mkdir()
    (package / "motion" / "__init__.py").write_text("")
    (package / "motion" / "m.py").write_text("from backend import cli\n")
    (package / "cli.py").write_text("import torch\n")
    (tmp_path / "momask_blender").mkdir()
    (tmp_path / "momask_blender" / "__init__.py").write_text("import backend.cli\n")
    structure = read_structure(tmp_path)
    assert cycles(structure.edges()) == [["backend.portable.a", "backend.portable.b"]]
    local = [i for i in structure.imports if i.local]
    assert [(i.source, i.target, i.line) for i in local] == [("backend.portable.a", "backend.portable.b", 2)]
    assert [(p.source, p.name) for p in structure.private] == [("backend.portable.b", "_hidden")]
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        kinds = {kind for kind, _, _ in violations(structure)}
    finally:
        ROOT = saved
    assert {"cycle", "private", "layer", "addon-imports-backend"} <= kinds


if __name__ == "__main__":  # the numbers: python tests/test_layers.py
    found = read_structure()
    print(f"{len(found.modules)} modules, {len(found.imports)} first-party imports")
    for component in cycles(found.edges()):
        print("cycle:", " <-> ".join(component))
    for package in PACKAGES:
        for sub in sorted({m.rsplit(".", 1)[0] if found.modules[m].name != "__init__.py" else m
                           for m in found.modules if m.startswith(package)}):
            count = sum(1 for i in found.imports if i.local and (i.source == sub or (
                i.source.rpartition(".")[0] == sub and found.modules[i.source].name != "__init__.py")))
            if count:
                print(f"function-local first-party imports in {sub}: {count}")
    for use in found.private:
        print(f"private: {use.where} {use.source} uses {use.target}.{use.name}")
    for kind, _, message in violations(found):
        if kind not in ("cycle", "private"):
            print(f"{kind}: {message}")
    sys.exit(0)
