"""Sphinx configuration of the keyflows spec site.

Build with `python docs/build.py` (or `nox -s docs`): it fetches mermaid into
docs/_static/mermaid/ first, then runs sphinx-build -W. Nothing on the built site is
loaded from another host; mermaid runs from _static/ (serve the site over http://,
browsers refuse ES modules from file://).
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

from sphinx.util import logging

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

from keyflows.spec import SPEC_VERSION  # noqa: E402

project = "keyflows"
author = "the keyflows authors"
copyright = "the keyflows authors"
release = SPEC_VERSION
version = ".".join(SPEC_VERSION.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinxcontrib.mermaid",
    "keyflows_sphinx",
]

root_doc = "index"
source_suffix = {".rst": "restructuredtext"}
exclude_patterns = ["_build", "_node", "_static", "_ext", "_generated", "README*"]
templates_path: list[str] = []
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

# --- mermaid: served from _static/mermaid/ (docs/build.py puts it there), never a CDN -------
MERMAID_LOCAL = "mermaid/mermaid.esm.min.mjs"
mermaid_use_local = MERMAID_LOCAL
mermaid_include_elk = False
mermaid_include_zenuml = False
mermaid_d3_zoom = False
mermaid_icon_packs: dict[str, str] = {}
mermaid_output_format = "raw"
mermaid_init_config = {"startOnLoad": False, "securityLevel": "strict",
                       "sequence": {"mirrorActors": False}}
mermaid_height = "auto"  # scale with the page width instead of squeezing into 500px
mermaid_fullscreen = False

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
html_sidebars = {"**": ["about.html", "navigation.html", "searchbox.html"]}


def _check_mermaid(app, config):  # type: ignore[no-untyped-def]
    if not (DOCS / "_static" / MERMAID_LOCAL).is_file():
        logging.getLogger("keyflows").warning(
            f"docs/_static/{MERMAID_LOCAL} is missing: build with `python docs/build.py`, "
            "which installs mermaid locally (diagrams would not render)",
            type="keyflows", subtype="mermaid")


def setup(app):  # type: ignore[no-untyped-def]
    app.connect("config-inited", _check_mermaid)
