"""Fingerprints of the code a workflow job runs, so that editing the library reruns what it affects.

Snakemake reruns a job when one of its ``params`` changes, but of the code it tracks only the
``script:`` files, and those are thin glue around this library. Every rule therefore has a ``code``
param: a digest of the code its job runs, found statically from the syntax trees (nothing is
imported or executed):

- the rule's script, and the top-level functions and classes it uses (``jobs.train_shard`` selects
  that function of ``jobs.py``, not the whole module);
- transitively, every top-level function, class or module those name, through ``import`` statements
  (top-level or inside the functions) within the package and, for a plug-in method, within the
  plug-in's own top-level package. A module's top-level statements (and its decorated definitions)
  always count once the module is imported, because they run at import time; a module used as a
  value rather than as ``module.name`` counts whole, as does ``import a.b`` and ``from m import *``;
- for unlearning jobs, the method's function (``module:function`` of the registry or of ``plugins``),
  because the registry finds it by name at run time, which no import statement shows. Plug-in
  files are located with :class:`importlib.machinery.PathFinder`, without running them.

The digest is of the normalised syntax tree: docstrings are dropped, and comments and layout are not
part of the tree, so editing a comment or a docstring changes no fingerprint. Anything reached only by
a dynamic lookup (``getattr`` with a computed name, ``importlib``) is invisible; the method registry
is the one such lookup the workflow relies on, and it is covered as said above.

Parsed files are cached per process by (path, size, mtime_ns, ctime_ns), so one DAG parses each file
once whatever the number of jobs.
"""

from __future__ import annotations

import ast
import hashlib
import sys
from collections import deque
from dataclasses import dataclass, field
from importlib.machinery import PathFinder
from pathlib import Path

PACKAGE = "unlearnbench"
WHOLE = "*"  # selection marker: every top-level definition of a module
DIGEST_CHARS = 20

# A binding of a name by an import: ("module", dotted name) or ("attr", module, attribute).
Binding = tuple


@dataclass(frozen=True)
class _Source:
    name: str  # dotted module name; "" for a script
    package: str  # what relative imports resolve against
    top: tuple[ast.stmt, ...]  # top-level statements other than function / class definitions
    defs: dict[str, ast.stmt]  # top-level function and class definitions by name
    decorated: frozenset[str]  # definitions with decorators: they run at import time
    top_bindings: dict[str, Binding] = field(default_factory=dict)
    # filled on demand: "" (the top-level statements) or a definition's name -> its uses / dump
    uses: dict[str, list] = field(default_factory=dict)
    dumps: dict[str, str] = field(default_factory=dict)

    def uses_of(self, name: str) -> list[tuple[str, str | None]]:
        if name not in self.uses:
            nodes = self.top if name == "" else (self.defs[name],)
            self.uses[name] = [use for node in nodes for use in _uses(node, self)]
        return self.uses[name]

    def dump(self, name: str) -> str:
        """The normalised text of the top-level statements ("") or of a definition: no docstrings,
        no comments, no positions."""
        if name not in self.dumps:
            nodes = self.top if name == "" else (self.defs[name],)
            for node in nodes:
                _strip_docstrings(node)
            self.dumps[name] = "\n".join(ast.dump(n, annotate_fields=False, include_attributes=False) for n in nodes)
        return self.dumps[name]


_parsed: dict[tuple[str, str], tuple[tuple[int, int, int], _Source]] = {}
_located: dict[str, Path | None] = {}


def _walk(node: ast.AST):
    """Every node under ``node`` (ast.walk, without its per-node generator overhead)."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        for name in current._fields:
            value = getattr(current, name, None)
            if isinstance(value, list):
                stack.extend(v for v in value if isinstance(v, ast.AST))
            elif isinstance(value, ast.AST):
                stack.append(value)


def _is_string_statement(node: ast.AST) -> bool:
    """A bare string literal statement: a docstring, or any other no-op string."""
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def _strip_docstrings(tree: ast.AST) -> None:
    """Drop every bare string statement (docstrings included) under ``tree``: they do nothing when run."""
    for node in _walk(tree):
        for name in ("body", "orelse", "finalbody"):
            body = getattr(node, name, None)
            if isinstance(body, list) and any(_is_string_statement(stmt) for stmt in body):
                setattr(node, name, [stmt for stmt in body if not _is_string_statement(stmt)] or [ast.Pass()])


def _parse(path: Path, name: str, package: str) -> _Source:
    stat = path.stat()
    key = (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    cached = _parsed.get((str(path), name))
    if cached is not None and cached[0] == key:
        return cached[1]
    tree = ast.parse(path.read_bytes(), filename=str(path))
    definitions = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    defs = {node.name: node for node in tree.body if isinstance(node, definitions)}
    source = _Source(
        name=name,
        package=package,
        top=tuple(node for node in tree.body if not isinstance(node, definitions) and not _is_string_statement(node)),
        defs=defs,
        decorated=frozenset(n for n, node in defs.items() if node.decorator_list),
    )
    for node in source.top:
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.If, ast.Try)):
            source.top_bindings.update(_resolve_imports(_imports_in(node), source)[0])
    _parsed[(str(path), name)] = (key, source)
    return source


def locate(module: str) -> Path | None:
    """The source file of ``module`` (``a.b.c``) on ``sys.path``, found without running any of it."""
    if module in _located:
        return _located[module]
    parts = module.split(".")
    search = None
    spec = None
    for i in range(len(parts)):
        spec = PathFinder.find_spec(".".join(parts[: i + 1]), search)
        if spec is None:
            break
        search = spec.submodule_search_locations
    origin = spec.origin if spec is not None else None
    path = Path(origin) if origin and origin.endswith(".py") else None
    _located[module] = path
    return path


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _is_module(module: str) -> bool:
    return locate(module) is not None


def _absolute(node: ast.ImportFrom, package: str) -> str:
    if not node.level:
        return node.module or ""
    base = package.split(".")
    base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
    return ".".join(base + ([node.module] if node.module else []))


def _prefixes(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def _imports_in(node: ast.AST) -> list[ast.stmt]:
    return [sub for sub in _walk(node) if isinstance(sub, (ast.Import, ast.ImportFrom))]


def _resolve_imports(imports, source: _Source) -> tuple[dict[str, Binding], list[tuple[str, str | None]]]:
    """Names ``imports`` bind, and the (module, selection) pairs they run."""
    bindings: dict[str, Binding] = {}
    runs: list[tuple[str, str | None]] = []
    for imp in imports:
        if isinstance(imp, ast.Import):
            for alias in imp.names:
                runs.extend((m, None) for m in _prefixes(alias.name))
                if alias.asname:
                    bindings[alias.asname] = ("module", alias.name)
                else:
                    top = alias.name.split(".")[0]
                    bindings[top] = ("module", top)
                    if "." in alias.name:  # used as a.b.f(): attribute chains are not followed
                        runs.append((alias.name, WHOLE))
            continue
        module = _absolute(imp, source.package)
        if not module:
            continue
        runs.extend((m, None) for m in _prefixes(module))
        for alias in imp.names:
            if alias.name == "*":
                runs.append((module, WHOLE))
                continue
            sub = f"{module}.{alias.name}"
            if _is_module(sub):
                runs.append((sub, None))
                bindings[alias.asname or alias.name] = ("module", sub)
            else:
                bindings[alias.asname or alias.name] = ("attr", module, alias.name)
    return bindings, runs


def _uses(node: ast.AST, source: _Source) -> list[tuple[str, str | None]]:
    """(module, selection) pairs that running ``node`` of ``source`` needs."""
    imports, attributes, names = [], [], []
    for sub in _walk(node):
        if isinstance(sub, (ast.Import, ast.ImportFrom)):
            imports.append(sub)
        elif isinstance(sub, ast.Attribute):
            if isinstance(sub.value, ast.Name):
                attributes.append(sub)
        elif isinstance(sub, ast.Name):
            names.append(sub)
    bindings, needed = _resolve_imports(imports, source)
    local = {**source.top_bindings, **bindings}
    attribute_bases = set()
    for sub in attributes:
        target = local.get(sub.value.id)
        if target is not None and target[0] == "module":
            needed.append((target[1], sub.attr))
            attribute_bases.add(id(sub.value))
    for sub in names:
        if id(sub) in attribute_bases:
            continue
        if sub.id in source.defs:
            needed.append((source.name, sub.id))
        if (target := local.get(sub.id)) is not None:  # both when an import shadows a definition
            needed.append((target[1], WHOLE) if target[0] == "module" else (target[1], target[2]))
    return needed


def _load(module: str, packages: frozenset[str], loaded: dict) -> _Source | None:
    if module in loaded:
        return loaded[module]
    source = None
    if module.split(".")[0] in packages and (path := locate(module)) is not None:
        package = module if _is_package(path) else module.rpartition(".")[0]
        source = _parse(path, module, package)
    loaded[module] = source
    return source


def _closure(entries, packages: frozenset[str], loaded: dict) -> dict[str, set[str]]:
    """Module -> selected top-level definitions (WHOLE for all), for everything ``entries`` need."""
    selected: dict[str, set[str]] = {}
    todo = deque(entries)
    while todo:
        module, name = todo.popleft()
        source = _load(module, packages, loaded)
        if source is None:
            continue
        if module not in selected:
            selected[module] = set()
            # importing a module runs its parents, its top-level statements and its decorators
            todo.extend((m, None) for m in _prefixes(module)[:-1])
            todo.extend(source.uses_of(""))
            todo.extend((module, d) for d in source.decorated)
        chosen = selected[module]
        if name is None or name in chosen or WHOLE in chosen:
            continue
        if name == WHOLE:
            chosen.add(WHOLE)
            for definition in source.defs:
                todo.extend(source.uses_of(definition))
        elif name in source.defs:
            chosen.add(name)
            todo.extend(source.uses_of(name))
        elif (target := source.top_bindings.get(name)) is not None:  # re-exported by an import
            todo.append((target[1], WHOLE) if target[0] == "module" else (target[1], target[2]))
        elif _is_module(f"{module}.{name}"):
            todo.append((f"{module}.{name}", None))
    return selected


def closure(script: str | Path, targets: tuple[str, ...] = (), package: str = PACKAGE,
            loaded: dict | None = None) -> dict[str, set[str]]:
    """Modules of ``package`` (and of the targets' top-level packages) that ``script`` plus ``targets``
    (``module:function``) run, each with its selected top-level definitions (WHOLE: all of them)."""
    source = _parse(Path(script), "", "")
    entries = [*source.uses_of(""), *(use for name in source.defs for use in source.uses_of(name))]
    for target in targets:
        module, _, function = target.partition(":")
        entries.append((module, function or WHOLE))
    packages = frozenset([package, *(t.split(":")[0].split(".")[0] for t in targets)])
    return _closure(entries, packages, {} if loaded is None else loaded)


def code_fingerprint(script: str | Path, targets: tuple[str, ...] = (), package: str = PACKAGE) -> str:
    """Digest of the code a job runs: ``script`` and what it uses, plus ``targets`` (``module:function``)."""
    source = _parse(Path(script), "", "")
    digest = hashlib.sha256(source.dump("").encode())
    for name in sorted(source.defs):
        digest.update(f"\0{name}\0{source.dump(name)}".encode())
    loaded: dict = {}
    for module, chosen in sorted(closure(script, targets, package, loaded).items()):
        module_source = loaded[module]
        names = module_source.defs if WHOLE in chosen else chosen | module_source.decorated
        digest.update(f"\0\0{module}\0{module_source.dump('')}".encode())
        for name in sorted(names):
            digest.update(f"\0{name}\0{module_source.dump(name)}".encode())
    return digest.hexdigest()[:DIGEST_CHARS]


def missing_target(target: str) -> str | None:
    """Why ``module:function`` cannot be found without running it, or None when it can."""
    module, _, function = target.partition(":")
    path = locate(module) if module else None
    if path is None:
        where = ", ".join(p for p in sys.path if p) or "(empty)"
        return f"module {module!r} not found on the Python path ({where}); add its folder to PYTHONPATH"
    if function:
        source = _parse(path, module, module if _is_package(path) else module.rpartition(".")[0])
        assigned = {t.id for node in source.top for t in _walk(node) if isinstance(t, ast.Name)
                    and isinstance(t.ctx, ast.Store)}
        if function not in source.defs and function not in source.top_bindings and function not in assigned:
            return f"{path} defines no top-level {function!r}"
    return None


def clear_cache() -> None:
    """Forget parsed files and located modules (tests that move files around need it)."""
    _parsed.clear()
    _located.clear()
