"""Fingerprints of the code a workflow job runs, so that editing the library reruns what it affects.

Snakemake reruns a job when one of its ``params`` changes, but of the code it tracks only the
``script:`` files, and those are thin glue around this library. Every rule therefore has a ``code``
param: a digest of the code its job runs, found statically from the syntax trees (nothing is
imported or executed):

- the rule's script, and the top-level functions and classes it uses (``stages.pool.fit_datamodels``
  selects that function of ``stages/pool.py``, not the whole module);
- transitively, every top-level function, class or module those name, through ``import`` statements
  (top-level or inside the functions) within the package and, for a plug-in method, within the
  plug-in's own top-level package. A module's top-level statements (and its decorated definitions)
  always count once the module is imported, because they run at import time; a module used as a
  value rather than as ``module.name`` counts whole, as does ``import a.b`` and ``from m import *``;
- the ``"module:function"`` texts of the data-set and model registries (:mod:`unlearnbench.registry`), of
  the kinds of method inputs (:mod:`unlearnbench.method_inputs`) and of the per-run metrics
  (:mod:`unlearnbench.run_metrics`), as uses of those functions;
- for unlearning jobs, the method's function (``module:function`` of the registry or of ``plugins``),
  because the registry finds it by name at run time, which no import statement shows. Plug-in
  files are located with :class:`importlib.machinery.PathFinder`, without running them.

The digest is of the normalised syntax tree: docstrings are dropped, and comments and layout are not
part of the tree, so editing a comment or a docstring changes no fingerprint. Anything reached only by
a dynamic lookup (``getattr`` with a computed name, ``importlib``) is invisible; the method registry
is the one such lookup the workflow relies on, and it is covered as said above.

What each file yields (its definitions, what each one uses, the digest of each) is kept per process
and in an index on disk (``$XDG_CACHE_HOME/unlearnbench``, ``~/.cache/unlearnbench`` or
``UNLEARNBENCH_CACHE_DIR``), keyed by (path, size, mtime_ns, ctime_ns) and by the package's file
layout: a snakemake run, and each job that parses the Snakefile again, parses only files that changed.
The index is an optimisation: unreadable, it is rebuilt; unwritable, it is skipped.
"""

from __future__ import annotations

import ast
import atexit
import hashlib
import json
import os
import re
import sys
import tempfile
from collections import deque
from dataclasses import dataclass, field
from importlib.machinery import PathFinder
from pathlib import Path

PACKAGE = "unlearnbench"
WHOLE = "*"  # selection marker: every top-level definition of a module
DIGEST_CHARS = 20
CACHE_DIR_ENV = "UNLEARNBENCH_CACHE_DIR"
INDEX_VERSION = 2

Use = tuple  # (module, selection): a top-level definition's name, WHOLE, or None (the module's top level)


@dataclass
class _Source:
    path: str
    name: str  # dotted module name; "" for a script
    package: str  # what relative imports resolve against
    followed: tuple[str, ...]  # top-level packages whose imports are resolved (others are not ours)
    key: tuple[int, int, int]  # (size, mtime_ns, ctime_ns) of the file these facts are from
    def_names: frozenset[str]  # top-level function and class definitions
    decorated: frozenset[str]  # definitions with decorators: they run at import time
    top_names: frozenset[str]  # every name bound at the top level
    top_bindings: dict[str, list]  # name -> ["module", m] or ["attr", m, a], from top-level imports
    uses: dict[str, list] = field(default_factory=dict)  # "" (top level) or a definition -> its uses
    digests: dict[str, str] = field(default_factory=dict)  # same keys -> digest of the normalised code
    tree: ast.Module | None = None

    def nodes(self, name: str) -> list[ast.stmt]:
        if self.tree is None:
            self.tree = ast.parse(Path(self.path).read_bytes(), filename=self.path)
        if name == "":
            return [n for n in self.tree.body if not isinstance(n, _DEFINITIONS) and not _is_string_statement(n)]
        return [n for n in self.tree.body if isinstance(n, _DEFINITIONS) and n.name == name]

    def uses_of(self, name: str) -> list[Use]:
        if name not in self.uses:
            self.uses[name] = [list(use) for node in self.nodes(name) for use in _uses(node, self)]
            _index.dirty = True
        return self.uses[name]

    def digest(self, name: str) -> str:
        """Digest of the normalised top-level statements ("") or of a definition: no docstrings, no
        comments, no positions."""
        if name not in self.digests:
            nodes = self.nodes(name)
            for node in nodes:
                _strip_docstrings(node)
            text = "\n".join(ast.dump(n, annotate_fields=False, include_attributes=False) for n in nodes)
            self.digests[name] = hashlib.sha256(text.encode()).hexdigest()
            _index.dirty = True
        return self.digests[name]


_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


class _Index:
    """Facts about files, in this process and on disk."""

    def __init__(self):
        self.sources: dict[tuple, _Source] = {}
        self.stored: dict[str, dict] | None = None  # the file on disk, read once
        self.dirty = False
        self.registered = False

    @staticmethod
    def path() -> Path:
        base = os.environ.get(CACHE_DIR_ENV) or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), PACKAGE)
        return Path(base) / f"code-index-py{sys.version_info[0]}{sys.version_info[1]}.json"

    def load(self) -> dict[str, dict]:
        if self.stored is None:
            self.stored = {}
            try:
                data = json.loads(self.path().read_text())
                if data.get("version") == INDEX_VERSION:
                    self.stored = data["files"]
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                pass
            if not self.registered:
                atexit.register(self.save)
                self.registered = True
        return self.stored

    def save(self) -> None:
        if not self.dirty:
            return
        # entries of files that are gone (temporary copies of a checkout) are dropped
        files = {k: v for k, v in (self.stored or {}).items() if os.path.exists(k.split("|", 1)[0])}
        for key, source in self.sources.items():
            files["|".join(key)] = {
                "key": source.key, "module": source.name, "package": source.package, "layout": _layout(key[2]),
                "def_names": sorted(source.def_names), "decorated": sorted(source.decorated),
                "top_names": sorted(source.top_names), "top_bindings": source.top_bindings,
                "uses": source.uses, "digests": source.digests,
            }
        path = self.path()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as handle:
                json.dump({"version": INDEX_VERSION, "files": files}, handle)
            os.replace(handle.name, path)
            self.dirty = False
        except OSError:
            pass  # an optimisation only


_index = _Index()
_located: dict[str, Path | None] = {}
_layouts: dict[str, str] = {}


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


def _layout(tops: str) -> str:
    """Digest of which module files exist in the packages ``tops`` (comma-separated): import
    statements resolve differently when a module appears or goes."""
    if tops not in _layouts:
        names = []
        for top in tops.split(","):
            path = locate(top)
            if path is not None and path.name == "__init__.py":
                root = path.parent
                names += sorted(str(p.relative_to(root.parent)) for p in root.rglob("*.py") if "__pycache__" not in p.parts)
            else:
                names.append(f"{top}:{path}")
        _layouts[tops] = hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]
    return _layouts[tops]


def _parse(path: Path, name: str, package: str, followed: tuple[str, ...]) -> _Source:
    stat = path.stat()
    key = (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    index_key = (str(path), name, ",".join(followed))
    source = _index.sources.get(index_key)
    if source is not None and source.key == key:
        return source
    stored = _index.load().get("|".join(index_key))
    if stored is not None and tuple(stored["key"]) == key and stored["layout"] == _layout(index_key[2]):
        source = _Source(path=str(path), name=name, package=package, followed=followed, key=key,
                         def_names=frozenset(stored["def_names"]), decorated=frozenset(stored["decorated"]),
                         top_names=frozenset(stored["top_names"]), top_bindings=stored["top_bindings"],
                         uses=stored["uses"], digests=stored["digests"])
    else:
        tree = ast.parse(path.read_bytes(), filename=str(path))
        defs = [node for node in tree.body if isinstance(node, _DEFINITIONS)]
        top = [node for node in tree.body if not isinstance(node, _DEFINITIONS)]
        top_names = {n.id for node in top for n in _walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        top_names |= {(a.asname or a.name).split(".")[0] for node in top for n in _walk(node)
                      if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
        source = _Source(path=str(path), name=name, package=package, followed=followed, key=key,
                         def_names=frozenset(node.name for node in defs),
                         decorated=frozenset(node.name for node in defs if node.decorator_list),
                         top_names=frozenset(top_names | {node.name for node in defs}), top_bindings={}, tree=tree)
        for node in top:
            bindings, _ = _resolve_imports([n for n in _walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))],
                                           source)
            source.top_bindings.update(bindings)
        _index.dirty = True
    _index.sources[index_key] = source
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


def _module_source(module: str, path: Path) -> _Source:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    return _parse(path, module, package, tuple(sorted({PACKAGE, module.split(".")[0]})))


def _absolute(node: ast.ImportFrom, package: str) -> str:
    if not node.level:
        return node.module or ""
    base = package.split(".")
    base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
    return ".".join(base + ([node.module] if node.module else []))


def _prefixes(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def _resolve_imports(imports, source: _Source) -> tuple[dict[str, list], list[Use]]:
    """Names ``imports`` bind, and the (module, selection) pairs they run, for the followed packages."""
    bindings: dict[str, list] = {}
    runs: list[Use] = []
    for imp in imports:
        if isinstance(imp, ast.Import):
            for alias in imp.names:
                if alias.name.split(".")[0] not in source.followed:
                    continue
                runs.extend((m, None) for m in _prefixes(alias.name))
                if alias.asname:
                    bindings[alias.asname] = ["module", alias.name]
                else:
                    top = alias.name.split(".")[0]
                    bindings[top] = ["module", top]
                    if "." in alias.name:  # used as a.b.f(): attribute chains are not followed
                        runs.append((alias.name, WHOLE))
            continue
        module = _absolute(imp, source.package)
        if not module or module.split(".")[0] not in source.followed:
            continue
        runs.extend((m, None) for m in _prefixes(module))
        for alias in imp.names:
            if alias.name == "*":
                runs.append((module, WHOLE))
                continue
            sub = f"{module}.{alias.name}"
            if locate(sub) is not None:
                runs.append((sub, None))
                bindings[alias.asname or alias.name] = ["module", sub]
            else:
                bindings[alias.asname or alias.name] = ["attr", module, alias.name]
    return bindings, runs


_TARGET = re.compile(rf"{PACKAGE}(\.[A-Za-z_][A-Za-z0-9_]*)+:[A-Za-z_][A-Za-z0-9_]*")
_METHOD_REGISTRY = f"{PACKAGE}.methods"


def _uses(node: ast.AST, source: _Source) -> list[Use]:
    """(module, selection) pairs that running ``node`` of ``source`` needs.

    A registry entry's ``"module:function"`` text (:mod:`unlearnbench.registry`: data sets, models) is a use of
    that function, except in the method registry: a job runs one method, whose target it counts itself."""
    imports, attributes, names, targets = [], [], [], []
    for sub in _walk(node):
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str) and source.name != _METHOD_REGISTRY:
            if _TARGET.fullmatch(sub.value):
                targets.append(tuple(sub.value.split(":")))
        elif isinstance(sub, (ast.Import, ast.ImportFrom)):
            imports.append(sub)
        elif isinstance(sub, ast.Attribute):
            if isinstance(sub.value, ast.Name):
                attributes.append(sub)
        elif isinstance(sub, ast.Name):
            names.append(sub)
    bindings, needed = _resolve_imports(imports, source)
    needed += [(module, function) for module, function in targets if locate(module) is not None]
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
        if sub.id in source.def_names:
            needed.append((source.name, sub.id))
        if (target := local.get(sub.id)) is not None:  # both when an import shadows a definition
            needed.append((target[1], WHOLE) if target[0] == "module" else (target[1], target[2]))
    return needed


def _load(module: str, packages: frozenset[str], loaded: dict) -> _Source | None:
    if module not in loaded:
        path = locate(module) if module.split(".")[0] in packages else None
        loaded[module] = _module_source(module, path) if path is not None else None
    return loaded[module]


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
            for definition in source.def_names:
                todo.extend(source.uses_of(definition))
        elif name in source.def_names:
            chosen.add(name)
            todo.extend(source.uses_of(name))
        elif (target := source.top_bindings.get(name)) is not None:  # re-exported by an import
            todo.append((target[1], WHOLE) if target[0] == "module" else (target[1], target[2]))
        elif locate(f"{module}.{name}") is not None:
            todo.append((f"{module}.{name}", None))
    return selected


def _script(script: str | Path, package: str) -> _Source:
    return _parse(Path(script), "", "", tuple(sorted({PACKAGE, package})))


def closure(script: str | Path, targets: tuple[str, ...] = (), package: str = PACKAGE,
            loaded: dict | None = None) -> dict[str, set[str]]:
    """Modules of ``package`` (and of the targets' top-level packages) that ``script`` plus ``targets``
    (``module:function``) run, each with its selected top-level definitions (WHOLE: all of them)."""
    source = _script(script, package)
    entries = [*source.uses_of(""), *(use for name in sorted(source.def_names) for use in source.uses_of(name))]
    for target in targets:
        module, _, function = target.partition(":")
        entries.append((module, function or WHOLE))
    packages = frozenset([PACKAGE, package, *(t.split(":")[0].split(".")[0] for t in targets)])
    return _closure(entries, packages, {} if loaded is None else loaded)


def code_fingerprint(script: str | Path, targets: tuple[str, ...] = (), package: str = PACKAGE) -> str:
    """Digest of the code a job runs: ``script`` and what it uses, plus ``targets`` (``module:function``)."""
    source = _script(script, package)
    digest = hashlib.sha256(source.digest("").encode())
    for name in sorted(source.def_names):
        digest.update(f"\0{name}\0{source.digest(name)}".encode())
    loaded: dict = {}
    for module, chosen in sorted(closure(script, targets, package, loaded).items()):
        module_source = loaded[module]
        names = module_source.def_names if WHOLE in chosen else chosen | module_source.decorated
        digest.update(f"\0\0{module}\0{module_source.digest('')}".encode())
        for name in sorted(names):
            digest.update(f"\0{name}\0{module_source.digest(name)}".encode())
    return digest.hexdigest()[:DIGEST_CHARS]


def missing_target(target: str) -> str | None:
    """Why ``module:function`` cannot be found without running it, or None when it can."""
    module, _, function = target.partition(":")
    path = locate(module) if module else None
    if path is None:
        where = ", ".join(p for p in sys.path if p) or "(empty)"
        return f"module {module!r} not found on the Python path ({where}); add its folder to PYTHONPATH"
    if function and function not in _module_source(module, path).top_names:
        return f"{path} defines no top-level {function!r}"
    return None


def clear_cache() -> None:
    """Forget what this process knows about files and modules (tests that move files around need it);
    the index on disk is read again when next needed."""
    _index.save()
    _index.sources.clear()
    _index.stored = None
    _located.clear()
    _layouts.clear()
