"""Run the reference server from a mutated copy of the tree: `python serve_mutant.py TREE
[server options]`, the equivalent of `python -m keyflows.reference` with TREE first on the
import path.

TREE is laid out as installed (TREE/keyflows/spec, TREE/keyflows/reference). Before the
server starts, every keyflows.spec and keyflows.reference module loaded so far must come
from TREE: an installed or editable copy that shadowed the mutant would make every
mutant survive.
"""

from __future__ import annotations

import sys
from pathlib import Path

SHADOW_EXIT = 3
MUTATED_PACKAGES = ("keyflows.spec", "keyflows.reference")


def shadowed_modules(tree: Path) -> list[str]:
    """Loaded spec/reference modules whose file is not inside `tree`."""
    out = []
    for name, module in sorted(sys.modules.items()):
        if not name.startswith(MUTATED_PACKAGES):
            continue
        file = getattr(module, "__file__", None)
        if file is None or not Path(file).resolve().is_relative_to(tree):
            out.append(f"{name} ({file})")
    return out


def main() -> None:
    tree = Path(sys.argv[1]).resolve()
    sys.path.insert(0, str(tree))
    from keyflows.reference import app, cli  # noqa: F401  (the whole server, imported)

    shadowed = shadowed_modules(tree)
    if shadowed:
        print(f"mutant tree shadowed: {', '.join(shadowed)}", file=sys.stderr)
        sys.exit(SHADOW_EXIT)
    cli.serve_command(sys.argv[2:], prog_name="python -m keyflows.reference")


if __name__ == "__main__":
    main()
