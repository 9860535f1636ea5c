"""Manifests checked against the schemas the API server would apply.

Core kinds (Deployment, DaemonSet, Service, ConfigMap) go through ``kubernetes-validate``
in strict mode (unknown fields are errors) for one pinned Kubernetes version. The operator's
kinds go through the OpenAPI schemas of its CRDs (``tests/k8s/crds``, one pinned release),
with unknown fields rejected too, as ``kubectl apply --validate=strict`` would. Child routes
of an AlertmanagerConfig are free-form in the CRD (``x-kubernetes-preserve-unknown-fields``)
but decoded by the operator as routes with unknown fields disallowed, so each is checked
against the route schema, recursively.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

CRDS = Path(__file__).resolve().parent.parent / "k8s" / "crds"
KUBERNETES_VERSION = "1.31"
_CRD_FILES = {
    "AlertmanagerConfig": "monitoring.coreos.com_alertmanagerconfigs.yaml",
    "PrometheusRule": "monitoring.coreos.com_prometheusrules.yaml",
    "ServiceMonitor": "monitoring.coreos.com_servicemonitors.yaml",
}
CUSTOM_KINDS = frozenset(_CRD_FILES)


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads a bare ``=`` (a matchType enum value) as the ``value`` tag."""


_Loader.add_constructor(
    "tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node)
)


def _strict(schema: Any) -> Any:
    """``schema`` with unknown properties rejected wherever the CRD lists the known ones."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _strict(value) for key, value in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@functools.cache
def crd_schema(kind: str, version: str) -> dict[str, Any]:
    crd = yaml.load((CRDS / _CRD_FILES[kind]).read_text(encoding="utf-8"), Loader=_Loader)
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    schema: dict[str, Any] = _strict(served["schema"]["openAPIV3Schema"])
    return schema


def _messages(validator: jsonschema.Draft7Validator, document: Any, where: str) -> Iterator[str]:
    for error in validator.iter_errors(document):
        path = "/".join(str(p) for p in error.absolute_path)
        yield f"{where}{'/' + path if path else ''}: {error.message}"


def _route_errors(route: dict[str, Any], schema: dict[str, Any], where: str) -> Iterator[str]:
    child_schema = copy.deepcopy(schema)
    yield from _messages(jsonschema.Draft7Validator(child_schema), route, where)
    for i, child in enumerate(route.get("routes", [])):
        yield from _route_errors(child, schema, f"{where}/routes/{i}")


def problems(document: dict[str, Any]) -> list[str]:
    """What the API server (or the operator) would reject in ``document``; [] if nothing."""
    kind = document.get("kind", "")
    if kind not in CUSTOM_KINDS:
        try:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            return [f"{kind}: {exc.message}"]
        return []
    version = document["apiVersion"].rsplit("/", 1)[-1]
    schema = crd_schema(kind, version)
    found = list(_messages(jsonschema.Draft7Validator(schema), document, kind))
    if kind == "AlertmanagerConfig" and "route" in document.get("spec", {}):
        route_schema = schema["properties"]["spec"]["properties"]["route"]
        for i, child in enumerate(document["spec"]["route"].get("routes", [])):
            found += _route_errors(child, route_schema, f"{kind}/spec/route/routes/{i}")
    return found
