"""Sphinx extension for the keyflows spec site.

Directives and roles (see each module):

- ``.. keyflows-requirement:: KD-3``, ``.. keyflows-requirements:: key-derivation``,
  ``:req:`KD-3``` (requirements.py), from spec/requirements.yaml;
- ``.. keyflows-vectors:: key-derivation``, ``.. keyflows-failure-classes::``
  (vectors.py), from vectors/*.yaml and keyflows.spec.errors;
- ``.. keyflows-openapi::``, ``.. keyflows-operations::`` (openapi.py), from
  spec/openapi.yaml;
- ``.. keyflows-coverage::`` (coverage.py);
- ``.. mermaid::`` diagrams rendered to inline SVG at build time (diagrams.py);
- the ``keyflows`` domain: requirements as searchable, indexed objects (requirements.py);
- ``.. keyflows-contract:: problems`` (and ``failure-classes``, ``headers``, ``limits``,
  ``choices``) (contract.py), from keyflows.spec.contract.

Every requirement ID in running text is kept on one line (util.keep_ids_whole).

Config values (paths relative to ``keyflows_root``, the repository): override with
``-D`` for experiments, e.g. ``-D keyflows_requirements_file=/tmp/req.yaml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sphinx.application import Sphinx

from keyflows_sphinx import contract, coverage, diagrams, openapi, requirements, util, vectors


def setup(app: Sphinx) -> dict[str, Any]:
    default_root = str(Path(app.confdir).resolve().parent)
    app.add_config_value("keyflows_root", default_root, "env", str)
    app.add_config_value("keyflows_requirements_file", "spec/requirements.yaml", "env", str)
    app.add_config_value("keyflows_openapi_file", "spec/openapi.yaml", "env", str)
    app.add_config_value("keyflows_vectors_dir", "vectors", "env", str)
    app.add_config_value("keyflows_reread_generated", True, "", bool)

    app.add_node(util.kf_ref,
                 html=(util.visit_unresolved, util.depart_unresolved),
                 text=(util.visit_unresolved, util.depart_unresolved),
                 latex=(util.visit_unresolved, util.depart_unresolved),
                 man=(util.visit_unresolved, util.depart_unresolved),
                 texinfo=(util.visit_unresolved, util.depart_unresolved))
    app.connect("env-purge-doc", util.purge_doc)
    app.connect("env-merge-info", util.merge_info)
    app.connect("env-get-outdated", util.outdated)
    app.connect("doctree-resolved", util.resolve_refs)
    app.connect("doctree-resolved", util.keep_ids_whole)
    app.add_node(util.folded,
                 html=(util.visit_folded_html, util.depart_folded_html),
                 text=(util.visit_folded_text, util.depart_folded_other),
                 latex=(util.visit_folded_other, util.depart_folded_other),
                 man=(util.visit_folded_other, util.depart_folded_other),
                 texinfo=(util.visit_folded_other, util.depart_folded_other))

    app.add_node(util.html_only,
                 html=(util.visit_passthrough, util.depart_passthrough),
                 text=(util.visit_html_only_text, None),
                 latex=(util.skip_node, None), man=(util.skip_node, None),
                 texinfo=(util.skip_node, None))
    app.add_node(util.html_only_inline,
                 html=(util.visit_passthrough, util.depart_passthrough),
                 text=(util.skip_node, None), latex=(util.skip_node, None),
                 man=(util.skip_node, None), texinfo=(util.skip_node, None))

    for module in (requirements, vectors, openapi, coverage, diagrams, contract):
        module.setup(app)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True,
            "env_version": 2}
