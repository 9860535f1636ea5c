"""Route templates (``/v1/jobs/{job_id}``) for the ``http_route`` label.

The router has already matched the request by the time the application returns and left the
matched route in ``scope["route"]``; we only translate that object into its full template,
mount prefixes included. Matching the path against every route again, as other middlewares
do, costs a regex per route per request and can disagree with the router.

A mounted application that is not a router of routes (``StaticFiles``, any ASGI app) is
labelled by its mount, ``/static/{path}``. Starlette's router names the mount in
``scope["route"]``; FastAPI's sets no route for a mount, so there the mount is found from
what it did leave: the prefix it consumed (``root_path`` beyond ``app_root_path``), matched
against the mount prefixes only, and only for requests a mount took.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, MutableMapping
from typing import Any

UNMATCHED = "_unmatched"
_CONVERTOR = re.compile(r"{([a-zA-Z_][a-zA-Z0-9_]*)(:[a-zA-Z_][a-zA-Z0-9_]*)?}")


def _template(path: str) -> str:
    """``/items/{id:int}`` -> ``/items/{id}``: the convertor is syntax, not part of the route."""
    return _CONVERTOR.sub(r"{\1}", path)


def _prefix_regex(prefix: str) -> re.Pattern[str]:
    parts = _CONVERTOR.split(prefix)
    # split() yields literal, name, convertor, literal, ...; parameters match one segment.
    pattern = "".join(
        re.escape(p) if i % 3 == 0 else "[^/]+" for i, p in enumerate(parts) if i % 3 != 2
    )
    return re.compile(pattern)


class RouteTemplates:
    """Maps the route objects of one application to their full templates."""

    def __init__(self) -> None:
        # id(route) -> (route, [(mount prefix regex, full template), ...])
        self._known: dict[int, tuple[Any, list[tuple[re.Pattern[str], str]]]] = {}
        # Every mount of the tree, outer ones first: (full prefix regex, "<prefix>/{path}").
        self._mounts: list[tuple[re.Pattern[str], str]] = []
        self._mount_ids: set[int] = set()  # the routes among _known that are mounts
        self._router_id: int | None = None
        # Moves on whenever the known templates may have changed (a walk of the route tree,
        # a route found outside it), so that what was derived from them can be dropped.
        self.generation = 0

    def fixed(self, route: Any) -> bool:
        """Whether ``template()`` gives ``route`` the same template for every request, until
        ``generation`` moves on: a known route under one prefix, not a mount (whose
        template depends on where the request went inside it)."""
        entry = self._known.get(id(route))
        return (
            entry is not None
            and entry[0] is route
            and len(entry[1]) == 1
            and id(route) not in self._mount_ids
        )

    def template(self, scope: MutableMapping[str, Any]) -> str:
        route = scope.get("route")
        if route is None:
            return self._mounted(scope)
        entry = self._known.get(id(route))
        if entry is None or entry[0] is not route:
            entry = self._refresh(scope, route)
        if id(route) in self._mount_ids:
            # The router named a mount, but a router inside it may have passed the request
            # on to a deeper mount without naming that one (FastAPI's routers do not).
            found = self._mounted(scope)
            if found != UNMATCHED:
                return found
        candidates = entry[1]
        if len(candidates) == 1:
            return candidates[0][1]
        # The same route object mounted under several prefixes: the concrete root path says which.
        root = scope.get("root_path", "")[len(scope.get("app_root_path", "")) :]
        for regex, template in candidates:
            if regex.fullmatch(root):
                return template
        return candidates[0][1]

    def _mounted(self, scope: MutableMapping[str, Any]) -> str:
        """The template of the mount that took a request without naming a route."""
        app_root = scope.get("app_root_path")
        router = scope.get("router")
        if app_root is None or router is None:  # no mount matched: a plain 404
            return UNMATCHED
        if id(router) != self._router_id:
            self._rewalk(router)
        prefix = scope.get("root_path", "")[len(app_root) :]
        # Walk order is the router's order; a nested mount's prefix contains its parent's, so
        # a full match finds the mount that consumed exactly this prefix.
        for regex, template in self._mounts:
            if regex.fullmatch(prefix):
                return template
        return UNMATCHED

    def _rewalk(self, router: Any) -> None:
        self.generation += 1
        if id(router) != self._router_id:
            self._known.clear()
            self._mounts.clear()
            self._mount_ids.clear()
            self._router_id = id(router)
        self._walk(getattr(router, "routes", ()), "", set())

    def _refresh(self, scope: MutableMapping[str, Any], route: Any) -> tuple[Any, list[Any]]:
        router = scope.get("router")
        if router is not None:
            self._rewalk(router)
        entry = self._known.get(id(route))
        if entry is None or entry[0] is not route:
            # A route outside the router's tree (a custom router, a copied scope): fall back
            # to its own template, which comes from code, never from the request.
            own = getattr(route, "path_format", None) or getattr(route, "path", None)
            template = _template(own) if isinstance(own, str) and own else UNMATCHED
            entry = (route, [(_prefix_regex(""), template)])
            self._known[id(route)] = entry
            self.generation += 1
        return entry

    def _walk(self, routes: Iterable[Any], prefix: str, seen: set[int]) -> None:
        for route in routes:
            children = getattr(route, "routes", None)
            path = getattr(route, "path", None)
            if children is not None and getattr(route, "host", None) is not None:
                self._walk(children, prefix, seen)  # Host(): no path prefix
                continue
            if not isinstance(path, str):
                continue
            if children is not None or (hasattr(route, "app") and not hasattr(route, "endpoint")):
                # Mount: the route itself when nothing inside matches (e.g. StaticFiles),
                # its children under the prefix otherwise.
                mount_prefix = prefix + _template(path.rstrip("/"))
                self._add(route, prefix, mount_prefix + "/{path}")
                self._mount_ids.add(id(route))
                mount = (_prefix_regex(mount_prefix), mount_prefix + "/{path}")
                if all(t != mount[1] for _, t in self._mounts):
                    self._mounts.append(mount)
                if children and id(route) not in seen:
                    self._walk(children, mount_prefix, seen | {id(route)})
                continue
            self._add(route, prefix, prefix + _template(getattr(route, "path_format", path)))

    def _add(self, route: Any, prefix: str, template: str) -> None:
        entry = self._known.get(id(route))
        if entry is None or entry[0] is not route:
            entry = self._known[id(route)] = (route, [])
        if all(t != template for _, t in entry[1]):
            entry[1].append((_prefix_regex(prefix), template))
