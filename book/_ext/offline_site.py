"""Keep the built site free of Thebe, which Jupyter Book always loads.

Thebe would run the code cells on a remote Binder kernel; the course is offline and shows the
stored outputs that CI validated, so it is switched off (``launch_buttons.thebe: false``).
Jupyter Book still adds sphinx-thebe's inline configuration script to every page (twice, which
makes the browser report "Identifier 'THEBE_JS_URL' has already been declared") and its
loader, whose configuration names a CDN, and a configuration block naming an example Binder
repository. This extension drops all of it from every page.
"""

from docutils import nodes
from sphinx.application import Sphinx


def _is_thebe(asset: object) -> bool:
    filename = getattr(asset, "filename", None) or ""
    body = getattr(asset, "attributes", {}).get("body", "")
    return "thebe" in filename or "THEBE_JS_URL" in body


def drop_thebe_assets(
    app: Sphinx, pagename: str, templatename: str, context: dict, doctree
) -> None:
    for key in ("script_files", "css_files"):
        if key in context:
            context[key] = [asset for asset in context[key] if not _is_thebe(asset)]


def drop_thebe_config(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    for node in list(doctree.findall(nodes.raw)):
        if "text/x-thebe-config" in node.astext():
            node.parent.remove(node)


def setup(app: Sphinx) -> dict:
    # Priority 900: after sphinx-thebe's own handlers (default priority 500) have run.
    app.connect("doctree-resolved", drop_thebe_config, priority=900)
    app.connect("html-page-context", drop_thebe_assets, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
