"""Sphinx configuration of the keyflows spec site.

Build with `python docs/build.py` (or `nox -s docs`): sphinx-build -W, then a scan for
anything loaded from another host. Diagrams are rendered to inline SVG at build time by
mermaid-cli (pinned in docs/_node/package-lock.json, installed once into a cache) with
Debian's chromium, so every page works from file:// and without JavaScript.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS / "_ext"))

# Autodoc imports the installed `keyflows` package. In a checkout where it is not
# installed, map the namespace onto the source tree: keyflows.<x> lives in <root>/<x>/
# (pyproject.toml's package-dir says the same).
if importlib.util.find_spec("keyflows") is None:
    _namespace = types.ModuleType("keyflows")
    _namespace.__path__ = [str(ROOT)]  # type: ignore[attr-defined]
    sys.modules["keyflows"] = _namespace

from keyflows.spec import PROFILE, SPEC_STATUS, SPEC_VERSION  # noqa: E402

project = "keyflows"
author = "the keyflows authors"
copyright = "the keyflows authors"
release = SPEC_VERSION
version = ".".join(SPEC_VERSION.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "keyflows_sphinx",
]

root_doc = "index"
source_suffix = {".rst": "restructuredtext"}
exclude_patterns = ["_build", "_node", "_static", "_ext", "_generated", "_templates", "text",
                    "README*"]
templates_path = ["_templates"]
nitpicky = False
keep_warnings = False
smartquotes = False  # the spec quotes byte strings: "application-key" must stay straight

# --- keyflows_sphinx: where the sources of truth are (relative to the repository) ---------
keyflows_root = str(ROOT)
keyflows_requirements_file = "spec/requirements.yaml"
keyflows_openapi_file = "spec/openapi.yaml"
keyflows_vectors_dir = "vectors"

# --- autodoc ---------------------------------------------------------------------------------
autodoc_default_options = {
    "members": True,
    "show-inheritance": True,
}
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True

# --- diagrams: mermaid-cli at build time (keyflows_sphinx/diagrams.py) --------------------
keyflows_mermaid_config = {
    "theme": "default",
    "securityLevel": "strict",
    "fontFamily": "DejaVu Sans, Verdana, Arial, sans-serif",
    "sequence": {"mirrorActors": False},
}

# --- HTML ----------------------------------------------------------------------------------------
html_theme = "alabaster"
html_title = f"keyflows {release}"
html_static_path = ["_static"]
html_css_files = ["keyflows.css"]
html_favicon = "_static/favicon.svg"
html_show_sphinx = False
html_show_sourcelink = False
html_copy_source = False
html_theme_options = {
    "description": "An end-to-end key service specification, shipped as software.",
    "show_powered_by": False,
    "fixed_sidebar": True,
    "page_width": "1180px",
    "sidebar_width": "240px",
    "extra_nav_links": {},
}
# A requirement ID typed into the search box lands on that requirement first.
html_search_scorer = str(DOCS / "_ext" / "keyflows_sphinx" / "search-scorer.js")
html_sidebars = {"**": ["about.html", "navigation.html", "searchbox.html"]}
# Every page says which version of the specification it shows and where it stands.
html_context = {"keyflows_spec_version": SPEC_VERSION, "keyflows_spec_status": SPEC_STATUS,
                "keyflows_profile": PROFILE}
