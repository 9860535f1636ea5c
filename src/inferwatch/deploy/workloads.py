"""The exporter (a DaemonSet) and the alert sink (a Deployment), each behind a Service.

Both run the inferwatch image the way ``docker-compose.yml`` runs it: as uid 10001, with a
read-only root file system, no capabilities and no privilege escalation, a writable
``/tmp`` only, requests and limits sized for what they do, and probes on the endpoints they
already serve. Neither talks to the Kubernetes API, so no service-account token is mounted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

UID = 10001  # the inferwatch user of the Dockerfile
NAME_LABEL = "app.kubernetes.io/name"


@dataclass(frozen=True)
class Workload:
    """One inferwatch command run in the cluster and the Service in front of it."""

    name: str  # Deployment/DaemonSet, Service and app.kubernetes.io/name
    kind: str  # "Deployment" or "DaemonSet"
    args: tuple[str, ...]  # after the image's `inferwatch` entrypoint
    port: int
    port_name: str
    probe_path: str
    requests: tuple[str, str]  # cpu, memory
    limits: tuple[str, str]
    data_dir: str | None = None  # an emptyDir for state, mounted here


EXPORTER = Workload(
    "inferwatch-exporter",
    "DaemonSet",  # host metrics are per node: one exporter on each
    ("exporter", "--host", "0.0.0.0", "--port", "9841"),
    9841,
    "metrics",
    # A scrape: the exporter serves nothing cheaper, and it fails when the server does.
    "/metrics",
    ("50m", "64Mi"),
    ("500m", "256Mi"),
)
ALERT_SINK = Workload(
    "inferwatch-alert-sink",
    "Deployment",
    (
        "alert-sink", "--host", "0.0.0.0", "--port", "9095",
        "--store", "/data/notifications.jsonl", "--no-access-log",
    ),
    9095,
    "http",
    "/healthz",
    ("20m", "64Mi"),
    ("250m", "256Mi"),
    # Notifications survive a container restart, not a rescheduled pod: it is a test sink.
    data_dir="/data",
)  # fmt: skip
WORKLOADS = (EXPORTER, ALERT_SINK)


def _probe(workload: Workload, *, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": workload.probe_path, "port": workload.port_name},
        "periodSeconds": period,
        "timeoutSeconds": 5,
        "failureThreshold": failures,
    }


def _container(workload: Workload, image: str) -> dict[str, Any]:
    mounts = [{"name": "tmp", "mountPath": "/tmp"}]
    if workload.data_dir:
        mounts.append({"name": "data", "mountPath": workload.data_dir})
    container: dict[str, Any] = {
        "name": workload.name.removeprefix("inferwatch-"),
        "image": image,
        "args": list(workload.args),
        "ports": [{"name": workload.port_name, "containerPort": workload.port}],
        "readinessProbe": _probe(workload, period=10, failures=3),
        # Slower to give up than readiness: a restart loses in-flight state.
        "livenessProbe": {**_probe(workload, period=20, failures=3), "initialDelaySeconds": 10},
        "resources": {
            "requests": {"cpu": workload.requests[0], "memory": workload.requests[1]},
            "limits": {"cpu": workload.limits[0], "memory": workload.limits[1]},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": mounts,
    }
    return container


def workload(workload: Workload, metadata: dict[str, Any], image: str) -> dict[str, Any]:
    """The Deployment or DaemonSet running ``workload``; ``metadata`` as for every manifest."""
    selector = {NAME_LABEL: workload.name}
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}]
    if workload.data_dir:
        volumes.append({"name": "data", "emptyDir": {"sizeLimit": "256Mi"}})
    pod = {
        "metadata": {"labels": {**metadata["labels"], **selector}},
        "spec": {
            "automountServiceAccountToken": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": UID,
                "runAsGroup": UID,
                "fsGroup": UID,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [_container(workload, image)],
            "volumes": volumes,
        },
    }
    spec: dict[str, Any] = {"selector": {"matchLabels": selector}, "template": pod}
    if workload.kind == "Deployment":
        spec = {"replicas": 1, **spec}
    return {
        "apiVersion": "apps/v1",
        "kind": workload.kind,
        "metadata": {**metadata, "labels": {**metadata["labels"], **selector}},
        "spec": spec,
    }


def service(workload: Workload, metadata: dict[str, Any]) -> dict[str, Any]:
    """The Service of ``workload``, labelled so its ServiceMonitor (if any) selects it."""
    selector = {NAME_LABEL: workload.name}
    port = {"name": workload.port_name, "port": workload.port, "targetPort": workload.port_name}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {**metadata, "labels": {**metadata["labels"], **selector}},
        "spec": {"selector": selector, "ports": [port]},
    }
