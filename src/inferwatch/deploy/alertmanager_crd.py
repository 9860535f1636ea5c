"""Our Alertmanager configuration as the spec of an ``AlertmanagerConfig`` (v1alpha1).

Converted from :func:`inferwatch.alertmanager.alertmanager_config`, the single source of the
route tree, receivers and inhibition, so Kubernetes routes exactly like the other
deployments. Anything the CRD cannot express raises instead of vanishing silently, except
``global`` (``resolve_timeout``), which only the Alertmanager's own configuration can set.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from inferwatch.alertmanager import Timing, alertmanager_config

API_VERSION = "monitoring.coreos.com/v1alpha1"

_MATCHER = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*$')
_ROUTE_KEYS = {
    "receiver": "receiver",
    "group_by": "groupBy",
    "group_wait": "groupWait",
    "group_interval": "groupInterval",
    "repeat_interval": "repeatInterval",
    "continue": "continue",
}
_WEBHOOK_KEYS = {"url": "url", "send_resolved": "sendResolved", "max_alerts": "maxAlerts"}


def matcher(text: str) -> dict[str, str]:
    """``severity="critical"`` -> ``{name: severity, value: critical, matchType: "="}``."""
    found = _MATCHER.match(text)
    if not found:
        raise ValueError(f'cannot convert matcher {text!r}: expected name<op>"value"')
    name, op, quoted = found.groups()
    return {"name": name, "value": json.loads(f'"{quoted}"'), "matchType": op}


def _only(native: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(native) - known)
    if unknown:
        raise ValueError(f"{where}: {unknown} have no AlertmanagerConfig equivalent here")


def route(native: Mapping[str, Any]) -> dict[str, Any]:
    _only(native, {*_ROUTE_KEYS, "matchers", "routes"}, "route")
    out: dict[str, Any] = {}
    for key, crd_key in _ROUTE_KEYS.items():
        if key in native:
            out[crd_key] = native[key]
    if native.get("matchers"):
        out["matchers"] = [matcher(m) for m in native["matchers"]]
    if native.get("routes"):
        out["routes"] = [route(child) for child in native["routes"]]
    return out


def receiver(native: Mapping[str, Any]) -> dict[str, Any]:
    _only(native, {"name", "webhook_configs"}, f"receiver {native.get('name')!r}")
    out: dict[str, Any] = {"name": native["name"]}
    hooks = []
    for hook in native.get("webhook_configs", []):
        _only(hook, set(_WEBHOOK_KEYS), f"webhook of {native['name']!r}")
        hooks.append({_WEBHOOK_KEYS[key]: value for key, value in hook.items()})
    if hooks:
        out["webhookConfigs"] = hooks
    return out


def inhibit_rule(native: Mapping[str, Any]) -> dict[str, Any]:
    _only(native, {"source_matchers", "target_matchers", "equal"}, "inhibit rule")
    return {
        "sourceMatch": [matcher(m) for m in native.get("source_matchers", [])],
        "targetMatch": [matcher(m) for m in native.get("target_matchers", [])],
        "equal": list(native.get("equal", [])),
    }


def spec(sink_url: str, *, timings: Mapping[str, Timing] | Timing | None = None) -> dict[str, Any]:
    """The ``spec`` of an AlertmanagerConfig whose receivers post to ``sink_url``
    (``timings`` as for :func:`inferwatch.alertmanager.alertmanager_config`)."""
    native = alertmanager_config(sink_url, timings=timings)
    _only(native, {"global", "route", "receivers", "inhibit_rules"}, "configuration")
    return {
        "route": route(native["route"]),
        "receivers": [receiver(r) for r in native["receivers"]],
        "inhibitRules": [inhibit_rule(r) for r in native.get("inhibit_rules", [])],
    }
