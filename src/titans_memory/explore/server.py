"""The explorer's web server serves its own pages only.

Panel's server adds generic routes besides the page: ``/components/<module>/<class>/<attr>/<path>``
imports ``<module>`` by name to find a component's resource files, so a request could make the
server import any installed module (and run its import-time code), and a crafted path reached
``importlib`` with ``..`` and ended in a server error. :func:`guard_routes` keeps every route the
explorer needs (the page, its websocket, Bokeh's and Panel's static files) and restricts the
components route to Panel's own modules and plain names: anything else is a 404 before any import.
The server binds to 127.0.0.1 (see :func:`titans_memory.explore.app.serve`).
"""

from __future__ import annotations

import re

from panel.io.server import ComponentResourceHandler
from tornado.web import HTTPError

#: top-level packages whose components' resource files the page may ask for
ALLOWED_COMPONENT_PACKAGES = ("panel",)
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@^+-]*")


def allowed_component_path(path: str) -> bool:
    """Whether ``<module>/<class>/<attr>/<file...>`` names a resource of an allowed package, without
    ``..``, empty or hidden parts (checked before Panel imports ``<module>``)."""
    parts = path.split("/")
    if len(parts) < 4 or not _MODULE.fullmatch(parts[0]):
        return False
    if parts[0].split(".")[0] not in ALLOWED_COMPONENT_PACKAGES:
        return False
    return all(_PART.fullmatch(p) and ".." not in p for p in parts[1:])


class GuardedComponentHandler(ComponentResourceHandler):
    """Panel's component-resource handler, answering 404 for any module but Panel's own."""

    def parse_url_path(self, path: str) -> str:
        if not allowed_component_path(path):
            raise HTTPError(404)
        return super().parse_url_path(path)


def guard_routes(server) -> None:
    """Swap the components route of a Panel/Bokeh ``server`` (not yet started) for the guarded one.

    Raises RuntimeError when the server's routes cannot be found (a Panel version that changed
    them): the explorer then refuses to start rather than serve unguarded routes.
    """
    app = getattr(server, "_tornado", None)
    router = getattr(app, "wildcard_router", None)
    if router is None:
        raise RuntimeError("titans explore: cannot find the web server's routes to restrict them (Panel changed?)")
    for rule in router.rules:
        if isinstance(rule.target, type) and issubclass(rule.target, ComponentResourceHandler):
            rule.target = GuardedComponentHandler
