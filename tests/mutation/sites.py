"""The mutation population: every place where the reference server refuses or enforces.

Sites are found in the source with `ast`, in reference/ and in the spec/ functions and
methods that reference/ reaches (directly or through other spec/ code; reach.py). Each
site is one mutant:

  guard-false    the condition of an `if` whose body refuses becomes False
  guard-true     the condition of an `if` whose else branch refuses becomes True
  drop-raise     a refusal that no single guard controls is not raised
  drop-operand   one operand of an and/or in such a condition is removed
  boundary       a comparison boundary in such a condition moves by one (< <=, > >=)
  drop-call      a statement calling a check or a side effect (burn, delete, insert,
                 remember, persist, authenticate, a spec check) is not executed
  accept         a boolean check returns its accepting value at once

A site is keyed without line numbers: file, qualified function, operator, a hash of the
mutated code, and an ordinal only when the same code occurs twice in one function. The
requirement of a site comes from the nearest `requirement=` argument, else the nearest
requirement ID in a comment, docstring of the function, class or module.
"""

from __future__ import annotations

import ast
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .reach import (
    FunctionNode,
    Module,
    definition,
    free_names,
    functions_in_scope,
    load_modules,
    reachable_spec,
    references,
    units,
)

ROOT = Path(__file__).resolve().parents[2]
# The command line and configuration refuse at start-up, never over HTTP; the envelope
# command line is a client (it seals and opens files), not part of the server.
# The reference encrypted data vault (`keyflows edv`) is a component of its own that the
# runner does not test (it plays a vault itself); tests/test_edv.py tests it. So is
# reference/witness.py (`keyflows witness`); tests/test_witness.py tests it.
# hashchain_config.py is configuration, as config.py.
EXCLUDED_FILES = frozenset({"reference/cli.py", "reference/__main__.py", "reference/config.py",
                            "reference/envelope_cli.py", "reference/edv.py",
                            "reference/edv_store.py", "reference/edv_cli.py",
                            "reference/hashchain_config.py", "reference/witness.py"})
# Functions of the server that run only while it starts (opening the database, migrating
# it), never for a request: no HTTP answer can show their mutants, as with config.py.
# Each names the test that covers it instead. Add one only when no request reaches it.
STARTUP_FUNCTIONS: dict[str, str] = {
    # the database files' 0600 mode, checked when a store opens its file (SqliteBackend.open)
    "reference/store.py:prepare_database_file":
        "tests/test_server_secrets.py::test_a_database_others_can_read_is_refused",
    "reference/store.py:check_private_file":
        "tests/test_server_secrets.py::test_a_wal_file_others_can_read_is_refused",
    # a log key left in the clear by an older database, sealed and erased when the log's
    # store attaches; Database.checkpoint (erasing the WAL's copy) has no other caller
    "reference/hashchain_store.py:move_clear_seed":
        "tests/test_server_secrets.py::test_a_clear_log_key_is_moved_and_erased",
    "reference/store.py:Database.checkpoint":
        "tests/test_server_secrets.py::test_a_clear_log_key_is_moved_and_erased",
    # the log's origin written once, and entry 0 (the log key) appended, when the log's
    # store attaches (reference/hashchain.py setup, while the app is built)
    "reference/hashchain_store.py:HashchainStore.attach":
        "tests/test_hashchain_store.py::test_a_database_keeps_its_origin_and_entry_0",
    "spec/hashchain.py:build_log_key_entry":
        "tests/test_hashchain_spec.py::TestRecordEntries::test_builders_refuse_wrong_lengths",
    # the directory's VRF key, expanded once when its store is made
    "spec/ecvrf.py:secret_scalar":
        "tests/test_ecvrf_kat.py::test_a_secret_key_is_32_bytes_and_expands_once",
}
# reference/ functions that run only while the server starts, with sites of their own that
# stay in the population (a server that cannot start fails every check); a spec/ function
# of STARTUP_FUNCTIONS must be reached from reference/ only through these and the
# reference/ entries of STARTUP_FUNCTIONS (tests/test_mutation_manifest.py).
STARTUP_CALLERS: dict[str, str] = {
    "reference/directory_store.py:DirectoryStore.__init__":
        "reference/directory.py setup makes the one directory store while the app is built",
}
# spec/ functions the server reaches only to parse rows it wrote itself to its own
# database (never request, account-server, vault or witness input): no client can put
# a malformed row there, so no HTTP answer can show their mutants. Each names the test
# or vector verifier that covers it instead; tests/test_mutation_manifest.py fails if
# one becomes reachable from a reference/ module other than a store (STORE_MODULES).
STORED_ROW_FUNCTIONS: dict[str, str] = {
    "spec/lock_layering.py:parse_keystore_record":
        "tests/test_lock_layering_spec.py::test_round_trips",
    "spec/lock_layering.py:parse_vault_binding":
        "vectors/lock_layering.py::_verify_layers",
    "spec/lock_layering.py:parse_working_key_record":
        "tests/test_lock_layering_spec.py::test_record_parse_errors",
    "spec/lock_layering.py:_parse_version":
        "tests/test_lock_layering_spec.py::test_record_parse_errors",
    "spec/lock_layering.py:_require_exact":
        "tests/test_lock_layering_spec.py::test_record_parse_errors",
    "spec/lock_layering.py:_members":
        "vectors/lock_layering.py::_verify_working_key",
}
STORE_MODULES = re.compile(r"\Areference/(?:\w+_)?store\.py\Z")
# The server-lock backends the mutation run's server is not configured with: it uses the
# key-file lock (conformance/embedded.py server_arguments: --master-key-file), so no
# mutant of the AWS KMS or PKCS#11 backend ever runs. A class stands for all its methods.
# Each names the test that runs it against the real part (moto_server, SoftHSM2);
# tests/test_mutation_manifest.py fails if the mutation run's server selects another lock
# or a listed spec/ function becomes reachable other than through these backends.
BACKEND_FUNCTIONS: dict[str, str] = {
    "reference/server_lock.py:AwsKmsServerLock":
        "tests/test_server_lock.py::TestAwsKms::test_binding_travels_as_encryption_context",
    "reference/server_lock.py:Pkcs11ServerLock":
        "tests/test_server_lock.py::TestPkcs11::test_blob_matches_the_file_backend_layout",
    "spec/lock_layering.py:server_lock_encryption_context":
        "tests/test_server_lock.py::TestAwsKms::test_binding_travels_as_encryption_context",
    # the payload store of a PostgreSQL database (the mutation run's server uses SQLite,
    # whose payloads are files)
    "reference/payload_store.py:DatabasePayloadStore":
        "tests/test_postgres.py::test_a_payload_posted_through_one_is_read_through_the_other",
    "reference/payload_store.py:DatabaseWriter":
        "tests/test_postgres.py::test_a_payload_posted_through_one_is_read_through_the_other",
    "reference/payload_store.py:_drop_upload":
        "tests/test_postgres.py::test_the_stores_on_postgresql",
}
# Where the server picks a backend: the only reference/ code outside BACKEND_FUNCTIONS that
# may name a reference/ entry of it (tests/test_mutation_manifest.py).
BACKEND_SELECTORS: dict[str, str] = {
    "reference/server_lock.py:open_server_lock": "the --server-lock backend (default: file)",
    "reference/envelope.py:setup": "DatabasePayloadStore only when --db is a PostgreSQL URL",
}
EXCLUSION_RULES: dict[str, dict[str, str]] = {
    "start-up only (STARTUP_FUNCTIONS)": STARTUP_FUNCTIONS,
    "stored rows only (STORED_ROW_FUNCTIONS)": STORED_ROW_FUNCTIONS,
    "backends the mutation server does not use (BACKEND_FUNCTIONS)": BACKEND_FUNCTIONS,
}


def listed_in(file: str, function: str, functions: dict[str, str]) -> bool:
    """Whether `file:function` is one of `functions`, or a method of a class listed there."""
    name = f"{file}:{function}"
    return name in functions or any(name.startswith(f + ".") for f in functions)

REQUIREMENT_ID = re.compile(r"\b(?:API|KD|KP|ENV|SC|LOCK|HC)-[1-9][0-9]*\b")

# Exceptions that are refusals without being a SpecError or Problem class: the JSON hooks
# raise ValueError, which the caller turns into a 400.
PLAIN_REFUSALS = frozenset({"ValueError"})
REFUSAL_BASES = frozenset({"SpecError", "Problem"})

# A statement calling one of these (its result unused) checks or changes state.
EFFECT_CALL = re.compile(
    r"\A_?(?:check|verify|validate|require|ensure|authenticate|authorize|burn|delete|"
    r"remove|insert|remember|persist|purge|record|consume|revoke|mark|put|store|save|"
    r"int_in|id_bytes|limited_body|spec_checked|in_thread)")
WRITE_SQL = re.compile(r"\A\s*(?:INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE)
SQL_CALLS = frozenset({"execute", "executemany"})

# Boolean checks: the value that lets the input through.
BOOL_CHECK = re.compile(r"(?:\A|_)(?:is|has|verify|valid|accepted|meets|servable|equal|"
                        r"canonical)(?:_|\Z)")
REJECTING_WORDS = re.compile(r"expired|low_order|revoked|invalid|taken|replayed|reused")

BOUNDARY_SWAP: dict[type[ast.cmpop], tuple[type[ast.cmpop], str, str]] = {
    ast.Lt: (ast.LtE, "<", "<="),
    ast.LtE: (ast.Lt, "<=", "<"),
    ast.Gt: (ast.GtE, ">", ">="),
    ast.GtE: (ast.Gt, ">=", ">"),
}

@dataclass(frozen=True)
class Edit:
    """Replace source bytes [start, end) with `text`."""

    start: int
    end: int
    text: bytes


@dataclass(frozen=True)
class Site:
    id: str
    file: str
    function: str
    operator: str
    line: int
    original: str
    mutated: str
    requirement: str | None
    edit: Edit = field(compare=False, repr=False)
    scope: tuple[int, int] = field(compare=False, repr=False, default=(0, 0))
    """Byte span of the top-level statement that holds the site."""

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def description(self) -> str:
        return f"{self.operator}: `{self.original}` -> `{self.mutated}`"

    def apply(self, source: bytes) -> bytes:
        return source[:self.edit.start] + self.edit.text + source[self.edit.end:]

    def mutated_scope(self, source: bytes) -> bytes:
        """The top-level statement holding the site, mutated (parses on its own)."""
        start, end = self.scope
        return (source[start:self.edit.start] + self.edit.text
                + source[self.edit.end:end])


# --- what counts as a refusal -----------------------------------------------------------------

def refusal_names(modules: dict[str, Module]) -> set[str]:
    """Names whose call, when raised, is a refusal: SpecError and Problem classes (and
    their subclasses) and functions annotated to return one of them."""
    names = set(REFUSAL_BASES) | set(PLAIN_REFUSALS)
    classes = [c for m in modules.values() for c in ast.walk(m.tree)
               if isinstance(c, ast.ClassDef)]
    changed = True
    while changed:
        changed = False
        for cls in classes:
            bases = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "")
                     for b in cls.bases}
            if cls.name not in names and bases & names:
                names.add(cls.name)
                changed = True
    for module in modules.values():
        for qualname, fn in module.functions.items():
            returns = fn.returns
            if returns is not None and ast.unparse(returns).strip("'\"") in names:
                names.add(qualname.rsplit(".", 1)[-1])
    return names


def _raised_name(node: ast.Raise) -> str | None:
    exc = node.exc
    if isinstance(exc, ast.Call):
        exc = exc.func
    if isinstance(exc, ast.Name):
        return exc.id
    if isinstance(exc, ast.Attribute):
        return exc.attr
    return None


def _walk_local(nodes: list[ast.stmt]) -> Iterator[ast.AST]:
    """Every node under `nodes`, not descending into nested functions or classes."""
    stack: list[ast.AST] = list(reversed(nodes))
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            continue
        stack.extend(reversed(list(ast.iter_child_nodes(node))))


def _is_refusal(node: ast.AST, refusals: set[str]) -> bool:
    return isinstance(node, ast.Raise) and _raised_name(node) in refusals


def _refuses(body: list[ast.stmt], refusals: set[str]) -> ast.Raise | None:
    for node in _walk_local(body):
        if isinstance(node, ast.Raise) and _is_refusal(node, refusals):
            return node
    return None


def _effect_call(stmt: ast.stmt) -> ast.Call | None:
    if not isinstance(stmt, ast.Expr):
        return None
    value = stmt.value.value if isinstance(stmt.value, ast.Await) else stmt.value
    if not isinstance(value, ast.Call):
        return None
    func = value.func
    name = func.id if isinstance(func, ast.Name) else (
        func.attr if isinstance(func, ast.Attribute) else "")
    if name in SQL_CALLS:
        first = value.args[0] if value.args else None
        if isinstance(first, ast.Constant) and isinstance(first.value, str) \
                and WRITE_SQL.match(first.value):
            return value
        return None
    return value if EFFECT_CALL.match(name) else None


# --- requirement inference ------------------------------------------------------------------

def _keyword_requirement(node: ast.AST) -> str | None:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            for kw in sub.keywords:
                if kw.arg == "requirement" and isinstance(kw.value, ast.Constant) \
                        and isinstance(kw.value.value, str):
                    return kw.value.value
    return None


def _comment_requirement(module: Module, line: int) -> str | None:
    lines = module.source.splitlines()
    for number in (line, line - 1):
        if 1 <= number <= len(lines):
            text = lines[number - 1].decode("utf-8", "replace")
            if "#" in text:
                match = REQUIREMENT_ID.search(text.split("#", 1)[1])
                if match:
                    return match.group(0)
    return None


def _doc_requirement(node: ast.AST) -> str | None:
    if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
        doc = ast.get_docstring(node)
        if doc:
            match = REQUIREMENT_ID.search(doc)
            if match:
                return match.group(0)
    return None


def infer_requirement(module: Module, qualname: str, node: ast.AST,
                      refusal: ast.AST | None) -> str | None:
    for candidate in (node, refusal):
        if candidate is not None:
            found = _keyword_requirement(candidate)
            if found:
                return found
    for candidate in (node, refusal):
        if candidate is not None and hasattr(candidate, "lineno"):
            found = _comment_requirement(module, candidate.lineno)
            if found:
                return found
    parts = qualname.split(".")
    scopes: list[ast.AST] = []
    for i in range(len(parts), 0, -1):  # enclosing functions, innermost first
        node_i = module.functions.get(".".join(parts[:i]))
        if node_i is not None:
            scopes.append(node_i)
    if parts[0] in module.classes:
        scopes.append(module.classes[parts[0]])
    scopes.append(module.tree)
    for scope in scopes:
        found = _doc_requirement(scope)
        if found:
            return found
    return None


# --- operators -----------------------------------------------------------------------------

def _one_line(text: bytes, limit: int = 90) -> str:
    flat = " ".join(text.decode("utf-8", "replace").split())
    return flat if len(flat) <= limit else flat[:limit - 3] + "..."


@dataclass
class _Draft:
    operator: str
    key: str  # the code the id hashes
    line: int
    original: str
    mutated: str
    edit: Edit
    requirement: str | None


def _drafts(module: Module, qualname: str, fn: FunctionNode,
            refusals: set[str]) -> Iterator[_Draft]:
    def req(node: ast.AST, refusal: ast.AST | None) -> str | None:
        return infer_requirement(module, qualname, node, refusal)

    guarded: set[int] = set()  # ids of raises a guard operator already covers
    for node in _walk_local(fn.body):
        if isinstance(node, ast.If):
            yield from _guard_drafts(module, node, refusals, guarded, req)
    for node in _walk_local(fn.body):
        if isinstance(node, ast.Raise) and _is_refusal(node, refusals) \
                and id(node) not in guarded:
            start, end = module.span(node)
            yield _Draft("drop-raise", ast.unparse(node), node.lineno,
                         _one_line(module.segment(node)), "pass", Edit(start, end, b"pass"),
                         req(node, node))
        elif isinstance(node, ast.stmt):
            call = _effect_call(node)
            if call is not None:
                start, end = module.span(node)
                yield _Draft("drop-call", ast.unparse(node), node.lineno,
                             _one_line(module.segment(node)), "pass",
                             Edit(start, end, b"pass"), req(call, None))
    yield from _accept_drafts(module, qualname, fn, req)


def _guard_drafts(module: Module, node: ast.If, refusals: set[str], guarded: set[int],
                  req: object) -> Iterator[_Draft]:
    assert callable(req)
    in_body = _refuses(node.body, refusals)
    in_else = _refuses(node.orelse, refusals) if node.orelse else None
    if in_body is not None and in_else is not None:
        return
    refusal = in_body or in_else
    if refusal is None:
        return
    branch = node.body if in_body is not None else node.orelse
    if len(branch) == 1 and branch[0] is refusal:
        guarded.add(id(refusal))
    test = node.test
    value = b"False" if in_body is not None else b"True"
    start, end = module.span(test)
    code = _one_line(module.segment(test))
    requirement = req(refusal, refusal)
    yield _Draft("guard-false" if in_body is not None else "guard-true",
                 ast.unparse(test), node.lineno, code, value.decode(),
                 Edit(start, end, value), requirement)
    for sub in ast.walk(test):
        if isinstance(sub, ast.BoolOp):
            joiner = b" and " if isinstance(sub.op, ast.And) else b" or "
            for i in range(len(sub.values)):
                rest = [module.segment(v) for j, v in enumerate(sub.values) if j != i]
                text = b"(" + joiner.join(rest) + b")"
                s_start, s_end = module.span(sub)
                yield _Draft("drop-operand", f"{ast.unparse(sub)} -{i}", sub.lineno,
                             _one_line(module.segment(sub)), _one_line(text),
                             Edit(s_start, s_end, text), requirement)
        elif isinstance(sub, ast.Compare):
            yield from _boundary_drafts(module, sub, requirement)


def _boundary_drafts(module: Module, node: ast.Compare,
                     requirement: str | None) -> Iterator[_Draft]:
    operands = [node.left, *node.comparators]
    for i, op in enumerate(node.ops):
        swap = BOUNDARY_SWAP.get(type(op))
        if swap is None:
            continue
        _, old, new = swap
        gap_start = module.span(operands[i])[1]
        gap_end = module.span(operands[i + 1])[0]
        gap = module.source[gap_start:gap_end]
        at = gap.find(old.encode())
        if at < 0:
            continue
        start = gap_start + at
        whole = module.segment(node)
        rel = start - module.span(node)[0]
        mutated = whole[:rel] + new.encode() + whole[rel + len(old):]
        yield _Draft("boundary", f"{ast.unparse(node)} #{i}", node.lineno,
                     _one_line(whole), _one_line(mutated),
                     Edit(start, start + len(old), new.encode()), requirement)


def _accept_drafts(module: Module, qualname: str, fn: FunctionNode,
                   req: object) -> Iterator[_Draft]:
    assert callable(req)
    if fn.returns is None or ast.unparse(fn.returns) not in ("bool", "'bool'"):
        return
    if not BOOL_CHECK.search(fn.name):
        return
    value = "False" if REJECTING_WORDS.search(fn.name) else "True"
    body = fn.body
    first = body[1] if len(body) > 1 and ast.get_docstring(fn) is not None else body[0]
    line_start = module.offset(first.lineno, 0)
    indent = module.source[line_start:module.offset(first.lineno, first.col_offset)]
    if indent.strip():
        return  # the statement does not start its line
    text = indent + f"return {value}\n".encode()
    yield _Draft("accept", f"{qualname} -> {value}", fn.lineno, f"def {fn.name}(...) -> bool",
                 f"return {value} at once", Edit(line_start, line_start, text),
                 req(fn, None))


# --- the population ---------------------------------------------------------------------------

def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


def discover(root: Path = ROOT) -> list[Site]:
    """The population in the tree at `root` (which holds spec/ and reference/)."""
    return discover_all(root)[0]


def discover_all(root: Path = ROOT) -> tuple[list[Site], dict[str, list[Site]]]:
    """(the population, the sites each of EXCLUSION_RULES leaves out of it)."""
    sites = _discover(root)
    left_out = {rule: [s for s in sites if listed_in(s.file, s.function, functions)]
                for rule, functions in EXCLUSION_RULES.items()}
    excluded = {s.id for found in left_out.values() for s in found}
    return [s for s in sites if s.id not in excluded], left_out


def reached_outside_stores(root: Path = ROOT) -> set[str]:
    """The STORED_ROW_FUNCTIONS that a reference/ module other than a store reaches."""
    modules = load_modules(root)
    reached = reachable_spec(modules, EXCLUDED_FILES,
                             roots=lambda path: not STORE_MODULES.match(path))
    return {name for name in STORED_ROW_FUNCTIONS
            if tuple(name.split(":", 1)) in reached}


def reference_callers(root: Path = ROOT) -> dict[tuple[str, str], set[str]]:
    """spec/ function -> the reference/ functions (file:qualname of a top-level function or
    a method; file:<module> for module-level code) that reach it, transitively."""
    modules = load_modules(root)
    def reach(refs: list[tuple[str, str]]) -> set[tuple[str, str]]:
        seen: set[tuple[str, str]] = set()
        queue = [r for r in refs if r[0].startswith("spec/")]
        while queue:
            ref = queue.pop()
            if ref in seen or ref[0] not in modules:
                continue
            node = definition(modules[ref[0]], ref[1])
            if node is None:
                continue
            seen.add(ref)
            queue.extend(r for r in references(modules[ref[0]], node)
                         if r[0].startswith("spec/"))
        return seen

    out: dict[tuple[str, str], set[str]] = {}
    for module in modules.values():
        if not module.path.startswith("reference/") or module.path in EXCLUDED_FILES:
            continue
        for name, unit in units(module):
            for spec_ref in reach(list(references(module, unit))):
                out.setdefault(spec_ref, set()).add(f"{module.path}:{name}")
    return out


def reference_mentions(root: Path = ROOT) -> dict[str, set[str]]:
    """reference/ definition (file:name of a top-level function or class) -> the
    reference/ code naming it (file:qualname of a top-level function or a method,
    file:<module> for other module-level code)."""
    modules = load_modules(root)
    out: dict[str, set[str]] = {}
    for module in modules.values():
        if not module.path.startswith("reference/"):
            continue
        local = {n.name for n in module.tree.body
                 if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)}
        for name, unit in units(module):
            named: set[str] = set()
            for ref in free_names(unit):
                if ref.id in module.imports and module.imports[ref.id][1] is not None:
                    target, member = module.imports[ref.id]
                    named.add(f"{target}:{member}")
                elif ref.id in local:
                    named.add(f"{module.path}:{ref.id}")
            for sub in ast.walk(unit):
                if isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name):
                    imported = module.imports.get(sub.value.id)
                    if imported is not None and imported[1] is None:
                        named.add(f"{imported[0]}:{sub.attr}")
            for target in named:
                out.setdefault(target, set()).add(f"{module.path}:{name}")
    return out


def _discover(root: Path) -> list[Site]:
    modules = load_modules(root)
    refusals = refusal_names(modules)
    sites: list[Site] = []
    for module, qualname, fn in functions_in_scope(modules, EXCLUDED_FILES):
        top = next(n for n in module.tree.body
                   if n.lineno <= fn.lineno <= (n.end_lineno or n.lineno))
        first = top.decorator_list[0] if isinstance(
            top, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and top.decorator_list \
            else top
        scope = (module.offset(first.lineno, 0), module.span(top)[1])
        counts: dict[str, int] = {}
        for draft in _drafts(module, qualname, fn, refusals):
            base = f"{module.path}:{qualname}:{draft.operator}:{_short_hash(draft.key)}"
            counts[base] = counts.get(base, 0) + 1
            site_id = base if counts[base] == 1 else f"{base}~{counts[base]}"
            sites.append(Site(id=site_id, file=module.path, function=qualname,
                              operator=draft.operator, line=draft.line,
                              original=draft.original, mutated=draft.mutated,
                              requirement=draft.requirement, edit=draft.edit,
                              scope=scope))
    sites.sort(key=lambda s: (s.file, s.edit.start, s.operator, s.id))
    return sites
