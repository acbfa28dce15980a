"""Parsing spec/ and reference/, and which of their code the server can run: reference/
(less the files the population leaves out) and the spec/ functions, classes and methods it
reaches."""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .receivers import PROJECT_BAGS, Kind, Receivers, stored_attributes

PACKAGES = ("spec", "reference")
PACKAGE_PREFIX = "keyflows."

FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef

# --- parsing -------------------------------------------------------------------------------

@dataclass
class Module:
    path: str  # relative to the repository root, e.g. "spec/hpke.py"
    source: bytes
    tree: ast.Module
    line_starts: list[int]
    functions: dict[str, FunctionNode]  # qualified name -> node
    classes: dict[str, ast.ClassDef]  # top-level classes
    imports: dict[str, tuple[str, str | None]]  # local name -> (module path, member or None)

    def offset(self, line: int, col: int) -> int:
        """Byte offset of an ast position (lines from 1, columns in UTF-8 bytes)."""
        return self.line_starts[line - 1] + col

    def segment(self, node: ast.AST) -> bytes:
        start = self.offset(node.lineno, node.col_offset)  # type: ignore[attr-defined]
        end = self.offset(node.end_lineno, node.end_col_offset)  # type: ignore[attr-defined]
        return self.source[start:end]

    def span(self, node: ast.AST) -> tuple[int, int]:
        return (self.offset(node.lineno, node.col_offset),  # type: ignore[attr-defined]
                self.offset(node.end_lineno, node.end_col_offset))  # type: ignore[attr-defined]


def module_path(dotted: str, root: Path) -> str | None:
    """keyflows.spec.hpke -> spec/hpke.py (if it exists); keyflows.spec -> spec/__init__.py."""
    if not dotted.startswith(PACKAGE_PREFIX):
        return None
    parts = dotted[len(PACKAGE_PREFIX):].split(".")
    if not parts or parts[0] not in PACKAGES:
        return None
    candidate = Path(*parts).with_suffix(".py")
    if (root / candidate).is_file():
        return candidate.as_posix()
    package = Path(*parts) / "__init__.py"
    if (root / package).is_file():
        return package.as_posix()
    return None


def _imports(tree: ast.Module, root: Path) -> dict[str, tuple[str, str | None]]:
    out: dict[str, tuple[str, str | None]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = module_path(f"{node.module}.{alias.name}", root)
                local = alias.asname or alias.name
                if sub is not None and not sub.endswith("__init__.py"):
                    out[local] = (sub, None)
                    continue
                parent = module_path(node.module, root)
                if parent is not None:
                    out[local] = (parent, alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                path = module_path(alias.name, root)
                if path is not None and alias.asname:
                    out[alias.asname] = (path, None)
    return out


def _functions(tree: ast.Module) -> dict[str, FunctionNode]:
    out: dict[str, FunctionNode] = {}

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                name = prefix + node.name
                out[name] = node
                visit(node.body, name + ".")
            elif isinstance(node, ast.ClassDef):
                visit(node.body, prefix + node.name + ".")

    visit(tree.body, "")
    return out


def parse(path: str, root: Path) -> Module:
    source = (root / path).read_bytes()
    tree = ast.parse(source, filename=path)
    starts = [0]
    for line in source.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    return Module(path=path, source=source, tree=tree, line_starts=starts,
                  functions=_functions(tree), classes=classes,
                  imports=_imports(tree, root))


def load_modules(root: Path) -> dict[str, Module]:
    modules = {}
    for package in PACKAGES:
        for file in sorted((root / package).glob("*.py")):
            path = file.relative_to(root).as_posix()
            modules[path] = parse(path, root)
    return modules


# --- scope: reference/ and the spec/ functions it reaches -------------------------------------

def _local_names(fn: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> set[str]:
    """The names a function binds itself (parameters, assignments): inside it they never
    mean a module-level definition of the same name."""
    args = fn.args
    names = {a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)}
    names |= {a.arg for a in (args.vararg, args.kwarg) if a is not None}
    body = fn.body if isinstance(fn.body, list) else [fn.body]
    for statement in body:
        for sub in ast.walk(statement):
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                names.add(sub.id)
    return names


def free_names(node: ast.AST, bound: frozenset[str] = frozenset()) -> Iterator[ast.Name]:
    """The Name nodes under `node` that are not bound by a function around them."""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
        bound = bound | _local_names(node)
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Name):
            # a name being bound (a class's field, a module-level assignment) refers to
            # no definition
            if child.id not in bound and isinstance(child.ctx, ast.Load):
                yield child
        else:
            yield from free_names(child, bound)


def references(module: Module, node: ast.AST) -> Iterator[tuple[str, str]]:
    """(module path, top-level name) pairs of spec/ definitions `node` mentions."""
    for name in free_names(node):
        if name.id in module.imports:
            target, member = module.imports[name.id]
            if member is not None:
                yield target, member
        elif module.path.startswith("spec/"):
            yield module.path, name.id
    for sub in ast.walk(node):
        if isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name):
            imported = module.imports.get(sub.value.id)
            if imported is not None and imported[1] is None:
                yield imported[0], sub.attr


def definition(module: Module, name: str) -> ast.AST | None:
    if name in module.classes:
        return module.classes[name]
    node = module.functions.get(name)
    return node if node is not None and "." not in name else None


def reachable_spec(modules: dict[str, Module], excluded: frozenset[str],
                   roots: Callable[[str], bool] = lambda path: True) -> set[tuple[str, str]]:
    """The spec/ code reference/ reaches (from the modules `roots` accepts), transitively:
    (module path, name) of top-level functions and classes, and (module path,
    "Class.method") of the methods reached code may call. A class brings its body (fields,
    decorators, bases) and the methods Python calls itself (dunders, properties); any
    other method only when reached code names it on an object that may be of that class
    (receivers.py)."""
    reach = _Reach(modules)
    for module in modules.values():
        if module.path.startswith("reference/") and module.path not in excluded \
                and roots(module.path):
            for name, unit in units(module):
                owner = name.split(".", 1)[0] if "." in name else None
                reach.visit(module, unit, owner)
    return reach.run()


class _Reach:
    def __init__(self, modules: dict[str, Module]) -> None:
        self.modules = modules
        self.queue: list[tuple[str, str]] = []
        self.seen: set[tuple[str, str]] = set()
        self.methods: dict[str, list[tuple[str, str]]] = {}
        """method name -> (module path, class) of reached classes defining it, not reached"""
        self.calls: dict[str, list[Kind]] = {}
        """attribute name -> the kinds of the objects reached code names it on"""
        self.bags = PROJECT_BAGS | stored_attributes(m.tree for m in modules.values())

    def visit(self, module: Module, node: ast.AST, owner: str | None) -> None:
        self.queue.extend(r for r in references(module, node) if r[0].startswith("spec/"))
        receivers = Receivers(module, self.modules, node, owner, self.bags)
        for sub in ast.walk(node):
            if isinstance(sub, ast.Attribute):
                self._call(sub.attr, receivers.receiver(sub))
            elif isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name) \
                    and sub.func.id in ("getattr", "hasattr") and len(sub.args) > 1 \
                    and isinstance(sub.args[1], ast.Constant) \
                    and isinstance(sub.args[1].value, str):
                self._call(sub.args[1].value, None)

    def _call(self, name: str, kind: Kind) -> None:
        self.calls.setdefault(name, []).append(kind)
        for path, cls in list(self.methods.get(name, [])):
            if self._may_be(kind, path, cls):
                self._method(path, cls, name)

    def _may_be(self, kind: Kind, path: str, cls: str) -> bool:
        return kind is None or bool(kind & self._family(path, cls))

    def _family(self, path: str, cls: str) -> set[tuple[str, str]]:
        """The class, the spec/ classes it derives from and those derived from it."""
        family = {(path, cls)}
        for other in self.modules.values():
            for name, node in other.classes.items():
                for base in node.bases:
                    named = _base_class(other, base)
                    if named == (path, cls):
                        family.add((other.path, name))
                    if (other.path, name) == (path, cls) and named is not None:
                        family.add(named)
        return family

    def _method(self, path: str, cls: str, name: str) -> None:
        if (path, cls) not in self.methods.get(name, []):
            return  # reached already, from inside its own visit
        self.methods[name].remove((path, cls))
        self.seen.add((path, f"{cls}.{name}"))
        method = next(n for n in self.modules[path].classes[cls].body
                      if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
                      and n.name == name)
        self.visit(self.modules[path], method, cls)

    def run(self) -> set[tuple[str, str]]:
        while self.queue:
            ref = self.queue.pop()
            if ref in self.seen or ref[0] not in self.modules:
                continue
            module = self.modules[ref[0]]
            node = definition(module, ref[1])
            if node is None:
                continue
            self.seen.add(ref)
            if not isinstance(node, ast.ClassDef):
                self.visit(module, node, None)
                continue
            for header in (*node.decorator_list, *node.bases, *node.keywords):
                self.visit(module, header, None)
            for item in node.body:
                if not isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    self.visit(module, item, ref[1])
                elif _implicitly_called(item):
                    self.seen.add((ref[0], f"{ref[1]}.{item.name}"))
                    self.visit(module, item, ref[1])
                else:
                    self.methods.setdefault(item.name, []).append(ref)
                    if any(self._may_be(k, *ref) for k in self.calls.get(item.name, [])):
                        self._method(ref[0], ref[1], item.name)
        return self.seen


def _implicitly_called(fn: FunctionNode) -> bool:
    """Dunders (Python calls them) and properties (read as attributes, called unseen)."""
    if fn.name.startswith("__") and fn.name.endswith("__"):
        return True
    for decorator in fn.decorator_list:
        name = decorator.id if isinstance(decorator, ast.Name) else \
            decorator.attr if isinstance(decorator, ast.Attribute) else ""
        if name in ("property", "cached_property", "setter", "deleter"):
            return True
    return False


def _base_class(module: Module, base: ast.expr) -> tuple[str, str] | None:
    if isinstance(base, ast.Name):
        if base.id in module.classes:
            return module.path, base.id
        target = module.imports.get(base.id)
        return (target[0], target[1]) if target is not None and target[1] else None
    if isinstance(base, ast.Attribute) and isinstance(base.value, ast.Name):
        target = module.imports.get(base.value.id)
        return (target[0], base.attr) if target is not None and target[1] is None else None
    return None


def functions_in_scope(modules: dict[str, Module], excluded: frozenset[str]
                       ) -> Iterator[tuple[Module, str, FunctionNode]]:
    """The functions of reference/ (less `excluded`) and of the spec/ code it reaches."""
    reached = reachable_spec(modules, excluded)
    for module in modules.values():
        if module.path in excluded:
            continue
        for qualname, node in module.functions.items():
            if module.path.startswith("reference/") or \
                    (module.path, _unit_of(module, qualname)) in reached:
                yield module, qualname, node


def _unit_of(module: Module, qualname: str) -> str:
    """The reachable unit holding a function: its top-level function, or its method."""
    parts = qualname.split(".")
    return ".".join(parts[:2]) if parts[0] in module.classes else parts[0]


def units(module: Module) -> list[tuple[str, ast.AST]]:
    """A module's top-level functions, its classes' methods (Class.method; Class.<class>
    for the rest of a class body) and its other module-level statements (<module>)."""
    units: list[tuple[str, ast.AST]] = []
    for node in module.tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            units.append((node.name, node))
        elif isinstance(node, ast.ClassDef):
            units += [(f"{node.name}.{n.name}", n) for n in node.body
                      if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
            units += [(f"{node.name}.<class>", n) for n in node.body
                      if not isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
        else:
            units.append(("<module>", node))
    return units
