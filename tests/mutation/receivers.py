"""Which spec/ classes the object before a `.name` can be, as far as the source says.

The population follows a method of a spec/ class only where reached code may call it:
`x.name` reaches `C.name` unless `x` is known to be something else. What is known comes
from the code itself, never from running it:

  - a parameter or variable annotated with a class, `self` and `cls` in a method, a
    variable bound only to `C(...)` or to another known variable;
  - literals, builtin types (str, bytes, dict, ...) and names imported from outside the
    project are outside it; so is an attribute of an object outside it (`request.url`,
    `os.path`), unless the project's code sets an attribute of that name on something
    other than `self` (Starlette's `app.state.x = ...`: a bag of the server's objects), and
    what a builtin or another library's function returns when given only such values
    (`urlsplit(url)`: a library cannot hand back a spec/ object it was not given);
  - anything else (a call's result, an item of a container, a loop variable, `Any`, a
    `typing` construct, a reference/ class) may be any class: it reaches every method
    of that name.
"""

from __future__ import annotations

import ast
import builtins
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .reach import Module

Kind = frozenset[tuple[str, str]] | None
"""What an expression may be: spec/ classes (module path, class name) and the markers
below; None: anything."""

OUTSIDE: frozenset[tuple[str, str]] = frozenset()
"""Nothing of spec/ (an attribute of a module, a receiver outside the project)."""
SCALAR: frozenset[tuple[str, str]] = frozenset({("<scalar>", "")})
"""A str, bytes, number or None."""
OTHER: frozenset[tuple[str, str]] = frozenset({("<other>", "")})
"""Another library's object (a container of them included)."""
LIBRARY: frozenset[tuple[str, str]] = frozenset({("<library>", "")})
"""A module, function or class of another library, or a builtin."""
PROJECT_MODULE: frozenset[tuple[str, str]] = frozenset({("<module>", "")})
"""A spec/ or reference/ module."""
MARKERS = SCALAR | OTHER | LIBRARY | PROJECT_MODULE

MODULE_PREFIX = "module:"
TYPING_MODULES = frozenset({"typing", "typing_extensions", "collections.abc", "abc"})
SCALAR_TYPES = frozenset({"str", "bytes", "int", "float", "bool"})
# Starlette's per-application and per-request bag: the server keeps its own objects there.
PROJECT_BAGS = frozenset({"state"})


def stored_attributes(trees: Iterator[ast.AST]) -> frozenset[str]:
    """Attribute names the code sets on objects other than `self` (`x.name = value`): on
    another library's object they may hold a spec/ object, so reading them is unknown."""
    return frozenset(
        node.attr for tree in trees for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)
        and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")))
BUILTIN_NAMES = frozenset(dir(builtins))


def outside(kind: Kind) -> bool:
    """Whether `kind` is known to hold nothing of spec/."""
    return kind is not None and kind <= MARKERS


def foreign_imports(tree: ast.Module) -> dict[str, str]:
    """Local name -> module, for names a module imports from outside the project."""
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and not node.module.startswith("keyflows"):
            for alias in node.names:
                out[alias.asname or alias.name] = node.module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if not alias.name.startswith("keyflows"):
                    local = alias.asname or alias.name.split(".")[0]
                    out[local] = MODULE_PREFIX + alias.name
    return out


def union(kinds: Iterator[Kind]) -> Kind:
    out: set[tuple[str, str]] = set()
    for kind in kinds:
        if kind is None:
            return None
        out |= kind
    return frozenset(out)


class Receivers:
    """The kinds of the names of one unit of code (a function with the functions inside
    it, or a module-level statement) of `module`."""

    def __init__(self, module: Module, modules: dict[str, Module], unit: ast.AST,
                 owner: str | None, bags: frozenset[str] = PROJECT_BAGS) -> None:
        self.module = module
        self.modules = modules
        self.bags = bags
        self.foreign = foreign_imports(module.tree)
        self.bindings: dict[str, list[ast.AST | Kind]] = {}
        self._resolving: set[str] = set()
        self._bind(unit, owner)

    # --- what the unit binds -------------------------------------------------------------

    def _bind(self, unit: ast.AST, owner: str | None) -> None:
        targets: set[int] = set()
        for node in ast.walk(unit):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                self._bind_arguments(node, owner if node is unit else None)
            elif isinstance(node, ast.Assign) and len(node.targets) == 1 \
                    and isinstance(node.targets[0], ast.Name):
                targets.add(id(node.targets[0]))
                self._add(node.targets[0].id, node.value)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                targets.add(id(node.target))
                self._add(node.target.id, self.annotation(node.annotation))
            elif isinstance(node, ast.ExceptHandler) and node.name:
                self._add(node.name, None)
        for node in ast.walk(unit):
            # any other binding: a tuple target, a loop, with, walrus, augmented, ...
            if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load) \
                    and id(node) not in targets:
                self._add(node.id, None)

    def _bind_arguments(self, fn: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda,
                        owner: str | None) -> None:
        args = fn.args
        positional = [*args.posonlyargs, *args.args]
        for index, arg in enumerate([*positional, *args.kwonlyargs]):
            if index == 0 and owner is not None and not _is_static(fn):
                self._add(arg.arg, frozenset({(self.module.path, owner)})
                          if self.module.path.startswith("spec/") else None)
            elif arg.annotation is not None:
                self._add(arg.arg, self.annotation(arg.annotation))
            else:
                self._add(arg.arg, None)
        for extra in (args.vararg, args.kwarg):
            if extra is not None:
                self._add(extra.arg, OTHER)  # a tuple or a dict

    def _add(self, name: str, value: ast.AST | Kind) -> None:
        self.bindings.setdefault(name, []).append(value)

    # --- kinds ---------------------------------------------------------------------------

    def annotation(self, node: ast.AST) -> Kind:
        """The kind of a value annotated with `node`."""
        if isinstance(node, ast.Constant) and node.value is None:
            return SCALAR
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            return union(iter((self.annotation(node.left), self.annotation(node.right))))
        if isinstance(node, ast.Name) and node.id in SCALAR_TYPES \
                and node.id not in self.module.imports and node.id not in self.foreign:
            return SCALAR
        if isinstance(node, ast.Name | ast.Attribute) and not self._typing(node):
            kind = self.expression(node)
            return OTHER if kind == LIBRARY else kind if kind != PROJECT_MODULE else None
        # containers, callables, typing constructs: may hold anything
        return None

    def _typing(self, node: ast.AST) -> bool:
        if isinstance(node, ast.Name):
            return self.foreign.get(node.id, "") in TYPING_MODULES
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            return self.foreign.get(node.value.id, "").removeprefix(MODULE_PREFIX) \
                in TYPING_MODULES
        return False

    def name(self, name: str) -> Kind:
        if name in self.bindings:
            if name in self._resolving:
                return None
            self._resolving.add(name)
            try:
                return union(v if not isinstance(v, ast.AST) else self.expression(v)
                             for v in self.bindings[name])
            finally:
                self._resolving.discard(name)
        if name in self.module.imports:
            target, member = self.module.imports[name]
            return PROJECT_MODULE if member is None else self._class(target, member)
        if name in self.module.classes:
            return self._class(self.module.path, name)
        if name in self.module.functions:
            return None
        if name in self.foreign or name in BUILTIN_NAMES:
            return LIBRARY
        return None

    def _class(self, path: str, name: str) -> Kind:
        module = self.modules.get(path)
        if path.startswith("spec/") and module is not None and name in module.classes:
            return frozenset({(path, name)})
        return None

    def expression(self, node: ast.AST) -> Kind:
        """The kind of the value of `node`."""
        if isinstance(node, ast.Constant | ast.JoinedStr | ast.Compare):
            return SCALAR
        if isinstance(node, ast.Tuple | ast.List | ast.Set | ast.Dict):
            items = [*node.keys, *node.values] if isinstance(node, ast.Dict) else node.elts
            return OTHER if all(i is not None and outside(self.expression(i))
                                for i in items) else None
        if isinstance(node, ast.BoolOp):
            return union(self.expression(v) for v in node.values)
        if isinstance(node, ast.IfExp):
            return union(iter((self.expression(node.body), self.expression(node.orelse))))
        if isinstance(node, ast.Name):
            return self.name(node.id)
        if isinstance(node, ast.Attribute):
            return self._attribute(node)
        if isinstance(node, ast.Call):
            return self._call(node)
        return None

    def _attribute(self, node: ast.Attribute) -> Kind:
        if isinstance(node.value, ast.Name) and node.value.id not in self.bindings:
            imported = self.module.imports.get(node.value.id)
            if imported is not None and imported[1] is None:
                return self._class(imported[0], node.attr)  # module.C
        owner = self.expression(node.value)
        if owner == LIBRARY:
            return LIBRARY  # os.path, urllib.parse.urlsplit, sqlite3.Row
        if outside(owner) and node.attr not in self.bags:
            return OTHER  # request.url, parts.path
        return None

    def _call(self, node: ast.Call) -> Kind:
        # calling a spec/ class makes one of it
        made = self.expression(node.func) if _names_class(self, node.func) else None
        if made and not outside(made):
            return made
        arguments = [*node.args, *(k.value for k in node.keywords)]
        # a library given only scalars (str, bytes, numbers) cannot hand back a spec/
        # object: it was never given one (a container may have been, later: no rule for
        # those); nor does a method of a scalar (str.strip, bytes.hex)
        if isinstance(node.func, ast.Name) and node.func.id == "super":
            return None  # the object itself, seen as its base class
        if self.expression(node.func) == LIBRARY and all(
                self.expression(a) == SCALAR for a in arguments):
            return OTHER
        if isinstance(node.func, ast.Attribute) and self.expression(node.func.value) == SCALAR:
            return OTHER
        return None

    def receiver(self, node: ast.Attribute) -> Kind:
        """The spec/ classes whose attribute `node` may name (a module's: none)."""
        kind = self.expression(node.value)
        return OUTSIDE if outside(kind) else kind


def _names_class(receivers: Receivers, func: ast.AST) -> bool:
    """Whether `func` names a spec/ class itself (`C`, `module.C`), not a variable."""
    if isinstance(func, ast.Name):
        return func.id not in receivers.bindings
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        imported = receivers.module.imports.get(func.value.id)
        return func.value.id not in receivers.bindings and imported is not None \
            and imported[1] is None
    return False


def _is_static(fn: ast.AST) -> bool:
    decorators = getattr(fn, "decorator_list", [])
    return any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in decorators)
