"""The Alertmanager configuration the Prometheus Operator assembles, rebuilt in Python.

Follows ``pkg/alertmanager/amcfg.go`` of the operator release the CRDs under ``tests/k8s``
come from (v0.93.0) for what our AlertmanagerConfig uses:

* ``convertRoute``: receivers become ``<namespace>/<name>/<receiver>``; typed matchers
  become ``name<op>"value"`` strings (``Matcher.String``, OpenMetrics escaping).
* the enforcer of ``alertmanagerConfigMatcherStrategy``: ``OnNamespace`` (the default)
  appends ``namespace="<config's namespace>"`` to the config's top route and to both sides
  of each inhibit rule; ``OnNamespaceExceptForAlertmanagerNamespace`` does so unless the
  config lives in the Alertmanager's namespace; ``None`` adds nothing. Whatever the
  strategy, the top route gets ``continue: true``.
* ``AddAlertmanagerConfigs``: the configs' top routes go *before* the base configuration's
  own child routes; inhibit rules and receivers are appended.

Only webhook receivers are converted (ours have no others); anything else raises, so a
receiver the real operator would handle differently cannot slip through unconverted.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

K8S = Path(__file__).resolve().parent.parent / "k8s"
# kube-prometheus-stack's default `alertmanager.config` (values.yaml), verbatim.
CHART_CONFIG = K8S / "kube-prometheus-stack-alertmanager.yaml"
STRATEGIES = ("OnNamespace", "OnNamespaceExceptForAlertmanagerNamespace", "None")

_ROUTE_KEYS = {
    "groupBy": "group_by",
    "groupWait": "group_wait",
    "groupInterval": "group_interval",
    "repeatInterval": "repeat_interval",
    "continue": "continue",
}


def chart_config() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(CHART_CONFIG.read_text(encoding="utf-8"))
    return loaded


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def matcher_text(matcher: Mapping[str, Any]) -> str:
    """``Matcher.String()``: ``name<matchType>"escaped value"``."""
    return f'{matcher["name"]}{matcher["matchType"]}"{_escape(matcher["value"])}"'


def _prefixed(receiver: str, namespace: str, name: str) -> str:
    return f"{namespace}/{name}/{receiver}" if receiver else ""


def convert_route(route: Mapping[str, Any], namespace: str, name: str) -> dict[str, Any]:
    unknown = set(route) - {*_ROUTE_KEYS, "receiver", "matchers", "routes"}
    if unknown:
        raise ValueError(f"route fields this rebuild does not convert: {sorted(unknown)}")
    out: dict[str, Any] = {"receiver": _prefixed(route.get("receiver", ""), namespace, name)}
    out.update({native: route[crd] for crd, native in _ROUTE_KEYS.items() if crd in route})
    if route.get("matchers"):
        out["matchers"] = [matcher_text(m) for m in route["matchers"]]
    if route.get("routes"):
        out["routes"] = [convert_route(child, namespace, name) for child in route["routes"]]
    return out


def convert_receiver(receiver: Mapping[str, Any], namespace: str, name: str) -> dict[str, Any]:
    unknown = set(receiver) - {"name", "webhookConfigs"}
    if unknown:
        raise ValueError(f"receiver fields this rebuild does not convert: {sorted(unknown)}")
    hooks = []
    for hook in receiver.get("webhookConfigs", []):
        if set(hook) - {"url", "sendResolved", "maxAlerts"}:
            raise ValueError(f"webhook fields this rebuild does not convert: {sorted(hook)}")
        converted: dict[str, Any] = {"url": hook["url"]}
        if "sendResolved" in hook:
            converted["send_resolved"] = hook["sendResolved"]
        if hook.get("maxAlerts", 0) > 0:
            converted["max_alerts"] = hook["maxAlerts"]
        hooks.append(converted)
    out: dict[str, Any] = {"name": _prefixed(receiver["name"], namespace, name)}
    if hooks:
        out["webhook_configs"] = hooks
    return out


def _enforced(strategy: str, namespace: str, alertmanager_namespace: str) -> bool:
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown matcher strategy {strategy!r}")
    if strategy == "None":
        return False
    if strategy == "OnNamespaceExceptForAlertmanagerNamespace":
        return namespace != alertmanager_namespace
    return True


def assemble(
    base: Mapping[str, Any],
    configs: Iterable[Mapping[str, Any]],
    *,
    strategy: str = "OnNamespace",
    alertmanager_namespace: str = "monitoring",
) -> dict[str, Any]:
    """``base`` (the Alertmanager's own configuration) with the AlertmanagerConfig
    manifests ``configs`` merged in, as the operator writes it for Alertmanager >= 0.22."""
    out = copy.deepcopy(dict(base))
    out.setdefault("receivers", [])
    out.setdefault("inhibit_rules", [])
    ordered = sorted(configs, key=lambda c: (c["metadata"]["namespace"], c["metadata"]["name"]))
    routes = []
    for config in ordered:
        namespace, name = config["metadata"]["namespace"], config["metadata"]["name"]
        spec = config["spec"]
        enforce = _enforced(strategy, namespace, alertmanager_namespace)
        scope = f'namespace="{_escape(namespace)}"'
        for rule in spec.get("inhibitRules", []):
            native = {
                "source_matchers": [matcher_text(m) for m in rule.get("sourceMatch", [])],
                "target_matchers": [matcher_text(m) for m in rule.get("targetMatch", [])],
                "equal": list(rule.get("equal", [])),
            }
            if enforce:
                for side in ("source_matchers", "target_matchers"):
                    if scope not in native[side]:
                        native[side].append(scope)
            out["inhibit_rules"].append(native)
        if spec.get("route") is None:
            continue
        top = convert_route(spec["route"], namespace, name)
        if enforce:
            top["matchers"] = [*top.get("matchers", []), scope]
        top["continue"] = True
        routes.append(top)
        out["receivers"] += [convert_receiver(r, namespace, name) for r in spec["receivers"]]
    out["route"] = {**out["route"], "routes": [*routes, *out["route"].get("routes", [])]}
    return out
