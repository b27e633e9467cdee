"""Clusters with Services and kube-dns, built in code (no YAML).

`service_cluster()` is the reference topology of docs/model.md (`tests.dataplane.builders.tiny_cluster`: a and
b on node-1, c on node-2) plus what `topology` creates with every cluster (pod
kube-system/coredns-0 on node-2, Service kube-dns at 10.96.0.10) and a Deployment-like pair
web-0 (node-1) and web-1 (node-2), container port 8080 named http, behind Service web.
"""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address

from tests.dataplane.builders import tiny_cluster
from topology.model import (
    Cluster,
    Container,
    ContainerPort,
    External,
    Namespace,
    NetworkMode,
    Pod,
    PortSpec,
    Protocol,
    Service,
    ServicePort,
    ServiceType,
)
from topology.workload import COREDNS_TEMPLATE, KUBE_DNS_PORTS

WEB_IP = "10.96.0.11"
DNS_IP = "10.96.0.10"
HTTP = (Container("web", (ContainerPort(8080, Protocol.TCP, "http"),)),)
LAPTOP = External("laptop", IPv4Address("192.0.2.10"), (PortSpec(80),))


def pod(
    name: str, node: str, ip: str, labels: dict[str, str], ns: str = "default"
) -> Pod:
    return Pod(ns, name, node, IPv4Address(ip), labels, HTTP)


def web_service(**changes: object) -> Service:
    """Service default/web: port 80 (http) -> targetPort http, selector app=web."""
    svc = Service(
        "default",
        "web",
        ServiceType.CLUSTER_IP,
        IPv4Address(WEB_IP),
        (ServicePort(80, "http", Protocol.TCP, "http"),),
        {"app": "web"},
    )
    return replace(svc, **changes)  # type: ignore[arg-type]


def service_cluster(
    mode: NetworkMode = NetworkMode.VXLAN,
    *services: Service,
    pods: tuple[Pod, ...] = (),
) -> Cluster:
    """The reference topology with kube-dns, web-0/web-1 and the given Services (default:
    `web_service()`)."""
    base = tiny_cluster(mode)
    coredns = Pod(
        "kube-system",
        "coredns-0",
        "node-2",
        IPv4Address("10.0.2.3"),
        COREDNS_TEMPLATE.labels,
        COREDNS_TEMPLATE.containers,
    )
    extra = [
        coredns,
        pod("web-0", "node-1", "10.0.1.5", {"app": "web"}),
        pod("web-1", "node-2", "10.0.2.4", {"app": "web"}),
        *pods,
    ]
    kube_dns = Service(
        "kube-system",
        "kube-dns",
        ServiceType.CLUSTER_IP,
        IPv4Address(DNS_IP),
        KUBE_DNS_PORTS,
        dict(COREDNS_TEMPLATE.labels),
    )
    all_services = services or (web_service(),)
    namespaces = {
        **base.namespaces,
        "kube-system": Namespace(
            "kube-system", {"kubernetes.io/metadata.name": "kube-system"}
        ),
    }
    return replace(
        base,
        config=replace(base.config, externals=(*base.config.externals, LAPTOP)),
        namespaces=namespaces,
        pods={**base.pods, **{p.key: p for p in extra}},
        services={s.key: s for s in (kube_dns, *all_services)},
    )
