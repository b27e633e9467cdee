"""Endpoints: the `from`, `to` and `at` of steps, and `${ip:ENDPOINT}` address references.

Forms (docs/scenario-format.md, Endpoints): `NS/POD`, `pod/NS/POD`, `NS/POD/CONTAINER`,
`pod/NS/POD/CONTAINER`, `node/NAME`, `external/NAME`, `svc/NS/NAME`, an IPv4 address,
`localhost`, and anything else without `/` is a DNS name.  Errors name the endpoint and list
what exists.

kubectl's habit, for the command line (`-n/--namespace NS`): `qualify` turns a name that
leaves out its namespace into the full form, a bare `NAME` into `NS/NAME` when that pod
exists, `pod/NAME` into `NS/NAME` and `svc/NAME` into `svc/NS/NAME`; `close_matches` finds
the pods and Services a mistyped name may have meant.  Scenario files always name the
namespace.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv4Address
from typing import Any

from topology import names
from topology.errors import TopologyError
from topology.model import Cluster, External, Loc, NodeSpec, Pod, Service

REF = re.compile(r"\$\{ip:([^}]*)\}")
LOCALHOST = IPv4Address("127.0.0.1")
_NUMERIC = re.compile(r"[0-9.]+")
FORMS = (
    "NS/POD, NS/POD/CONTAINER, node/NAME, external/NAME, svc/NS/NAME,"
    " container/NODE/NAME"
)
# Heads of the `KIND/...` forms: a namespace of that name is written `pod/NS/POD`.
HEADS = ("pod", "node", "external", "svc", "container")
_SHOWN = 12


class EndpointKind(StrEnum):
    POD = "pod"
    CONTAINER = "container"
    NODE = "node"
    EXTERNAL = "external"
    SERVICE = "service"
    DNS = "dns"
    IP = "ip"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A resolved endpoint; which fields are set depends on `kind`.

    A pod (or container) endpoint also carries the pod's node, and `ip` is its address;
    `container` is the named container, or the pod's first one.
    """

    kind: EndpointKind
    pod: Pod | None = None
    container: str | None = None
    node: NodeSpec | None = None
    external: External | None = None
    service: Service | None = None
    name: str | None = None  # the DNS name, or "localhost"
    ip: IPv4Address | None = None
    text: str = ""  # as written


def _listing(label: str, items: Iterable[str]) -> str:
    values = list(items)
    if not values:
        return f"no {label}"
    shown = ", ".join(values[:_SHOWN])
    more = f", ... ({len(values) - _SHOWN} more)" if len(values) > _SHOWN else ""
    return f"{label}: {shown}{more}"


def _fail(text: str, reason: str, loc: Loc | None) -> TopologyError:
    return TopologyError(f"endpoint {text!r}: {reason}", loc)


def find_pod(
    cluster: Cluster, namespace: str, name: str, text: str, loc: Loc | None = None
) -> Pod:
    """The pod `namespace/name`, or an error listing the pods (or namespaces) there are."""
    pod = cluster.pods.get(f"{namespace}/{name}")
    if pod is not None:
        return pod
    if namespace not in cluster.namespaces:
        listing = _listing("namespaces", cluster.namespaces)
        raise _fail(text, f"no namespace {namespace!r} ({listing})", loc)
    here = (p.name for p in cluster.pods.values() if p.namespace == namespace)
    raise _fail(
        text,
        f"no pod {name!r} in namespace {namespace!r} ({_listing('pods', here)})",
        loc,
    )


def _pod_endpoint(
    cluster: Cluster,
    text: str,
    namespace: str,
    name: str,
    container: str | None,
    loc: Loc | None,
) -> Endpoint:
    pod = find_pod(cluster, namespace, name, text, loc)
    node = cluster.node(pod.node)
    if container is None:
        first = pod.containers[0].name if pod.containers else None
        return Endpoint(
            EndpointKind.POD, text=text, pod=pod, container=first, node=node, ip=pod.ip
        )
    if all(c.name != container for c in pod.containers):
        listing = _listing("containers", (c.name for c in pod.containers))
        raise _fail(
            text, f"pod {pod.key} has no container {container!r} ({listing})", loc
        )
    return Endpoint(
        EndpointKind.CONTAINER,
        text=text,
        pod=pod,
        container=container,
        node=node,
        ip=pod.ip,
    )


def resolve_endpoint(cluster: Cluster, text: str, loc: Loc | None = None) -> Endpoint:
    """What an endpoint string designates in `cluster` (see the module docstring)."""
    parts = text.split("/")
    head = parts[0]
    if any(not p for p in parts) or not text:
        raise _fail(
            text,
            f"empty part (forms: {FORMS}, an IP, a DNS name)",
            loc,
        )
    if len(parts) == 1:
        return _single(cluster, text, loc)
    if head == "pod":
        if len(parts) not in (3, 4):
            raise _fail(text, "expected pod/NS/POD or pod/NS/POD/CONTAINER", loc)
        return _pod_endpoint(
            cluster,
            text,
            parts[1],
            parts[2],
            parts[3] if len(parts) == 4 else None,
            loc,
        )
    if head == "container":
        return _container_endpoint(cluster, text, parts[1:], loc)
    if head == "node":
        if len(parts) != 2:
            raise _fail(
                text,
                "expected node/NAME (write pod/node/... for a namespace named 'node')",
                loc,
            )
        for node in cluster.nodes:
            if node.name == parts[1]:
                return Endpoint(EndpointKind.NODE, text=text, node=node, ip=node.ip)
        raise _fail(
            text,
            f"no node {parts[1]!r} ({_listing('nodes', (n.name for n in cluster.nodes))})",
            loc,
        )
    if head == "external":
        if len(parts) != 2:
            raise _fail(text, "expected external/NAME", loc)
        for ext in cluster.config.externals:
            if ext.name == parts[1]:
                return Endpoint(
                    EndpointKind.EXTERNAL, text=text, external=ext, ip=ext.ip
                )
        listing = _listing("externals", (e.name for e in cluster.config.externals))
        raise _fail(text, f"no external host {parts[1]!r} ({listing})", loc)
    if head == "svc":
        if len(parts) != 3:
            raise _fail(text, "expected svc/NS/NAME", loc)
        svc = cluster.services.get(f"{parts[1]}/{parts[2]}")
        if svc is None:
            here = (
                s.name for s in cluster.services.values() if s.namespace == parts[1]
            )
            raise _fail(
                text,
                f"no service {parts[2]!r} in namespace {parts[1]!r}"
                f" ({_listing('services', here)})",
                loc,
            )
        return Endpoint(EndpointKind.SERVICE, text=text, service=svc, ip=svc.cluster_ip)
    if len(parts) in (2, 3):
        return _pod_endpoint(
            cluster,
            text,
            parts[0],
            parts[1],
            parts[2] if len(parts) == 3 else None,
            loc,
        )
    raise _fail(
        text,
        f"too many '/' (forms: {FORMS})",
        loc,
    )


def _container_endpoint(
    cluster: Cluster, text: str, parts: list[str], loc: Loc | None
) -> Endpoint:
    """`container/NODE/NAME`, or `container/NAME` when one host has that container
    (`runtime: docker`): the namespace's pod record, the container named."""
    runtime = cluster.docker
    if runtime is None:
        raise _fail(text, "containers are endpoints with runtime: docker only", loc)
    if len(parts) not in (1, 2):
        raise _fail(text, "expected container/NODE/NAME or container/NAME", loc)
    name = parts[-1]
    hosts = [h for h in runtime.hosts.values() if h.container(name) is not None]
    if len(parts) == 2:
        if parts[0] not in runtime.hosts:
            listing = _listing("nodes", runtime.hosts)
            raise _fail(text, f"no node {parts[0]!r} ({listing})", loc)
        hosts = [h for h in hosts if h.name == parts[0]]
    if not hosts:
        where = f" on {parts[0]}" if len(parts) == 2 else ""
        every = (
            f"{h.name}/{c.name}"
            for h in runtime.hosts.values()
            for c in h.containers
            if len(parts) == 1 or h.name == parts[0]
        )
        raise _fail(
            text, f"no container {name!r}{where} ({_listing('containers', every)})", loc
        )
    if len(hosts) > 1:
        listing = ", ".join(f"container/{h.name}/{name}" for h in hosts)
        raise _fail(text, f"{name!r} is on several nodes: name one ({listing})", loc)
    host = hosts[0]
    owner = runtime.owner(host.name, name)
    pod = cluster.pods[f"{host.name}/{owner.name}"]
    return Endpoint(
        EndpointKind.CONTAINER,
        text=text,
        pod=pod,
        container=name,
        node=cluster.node(host.name),
        ip=pod.ip,
    )


def _single(cluster: Cluster, text: str, loc: Loc | None) -> Endpoint:
    if text == "localhost":
        return Endpoint(EndpointKind.IP, text=text, name="localhost", ip=LOCALHOST)
    if _NUMERIC.fullmatch(text):
        try:
            return Endpoint(EndpointKind.IP, text=text, ip=IPv4Address(text))
        except ValueError:
            raise _fail(text, "not a valid IPv4 address", loc) from None
    reason = names.dns_name(text)
    if reason is not None:
        raise _fail(text, reason, loc)
    return Endpoint(EndpointKind.DNS, text=text, name=text)


def is_bare(text: str) -> bool:
    """Whether `text` is a bare name: no `/`, not an address, not `localhost`.

    >>> [is_bare(t) for t in ("pod1", "web.shop", "x/a", "10.0.1.3", "localhost")]
    [True, True, False, False, False]
    """
    return "/" not in text and text != "localhost" and not _NUMERIC.fullmatch(text)


def pod_text(pod: Pod) -> str:
    """The endpoint text of a pod: `NS/POD`, or `pod/NS/POD` where NS is a form's head."""
    return f"pod/{pod.key}" if pod.namespace in HEADS else pod.key


def check_namespace(cluster: Cluster, namespace: str) -> None:
    """An error when `namespace` (the command line's `-n`) does not exist; with
    `runtime: docker`, which has no namespaces, when it is not the default one."""
    if cluster.docker is not None:
        if namespace != "default":
            raise TopologyError(
                f"runtime: docker has no namespaces (-n {namespace}); name containers"
                " container/NODE/NAME"
            )
        return
    if namespace not in cluster.namespaces:
        listing = _listing("namespaces", cluster.namespaces)
        raise TopologyError(f"namespace {namespace!r} does not exist ({listing})")


def qualify(cluster: Cluster, text: str, namespace: str) -> str:
    """`text` with the namespace kubectl's `-n` gives it: a bare name that is a pod of
    `namespace` becomes that pod, `pod/NAME` and `svc/NAME` gain the namespace; every
    other text is returned as it is (a bare name that is no pod stays a DNS name).

    A pod's name is not a DNS name in Kubernetes (only Services and `A-B-C-D.NS.pod`
    names resolve), so the bare name of a pod can mean nothing else.
    """
    check_namespace(cluster, namespace)
    head, _, name = text.rpartition("/")
    if head == "svc" and name:
        return f"svc/{namespace}/{name}"
    if (head == "pod" and name) or is_bare(text):
        pod = cluster.pods.get(f"{namespace}/{name}")
        if pod is not None:
            return pod_text(pod)
        if head == "pod":  # resolve_endpoint says which pods there are
            return f"pod/{namespace}/{name}"
    return text


def close_matches(cluster: Cluster, name: str, limit: int = 3) -> list[str]:
    """The pods and Services whose name is close to `name` (difflib), best first, as
    endpoint texts (`NS/POD`, `svc/NS/NAME`).

    When pods or Services of exactly that name exist (in other namespaces), only they.
    """
    texts: dict[str, list[str]] = {}
    for pod in cluster.pods.values():
        texts.setdefault(pod.name, []).append(pod_text(pod))
    for svc in cluster.services.values():
        texts.setdefault(svc.name, []).append(f"svc/{svc.key}")
    lower = name.lower()
    if lower in texts:
        return texts[lower][:limit]
    found: list[str] = []
    for word in (lower, lower.split(".")[0]):
        for match in difflib.get_close_matches(word, list(texts), limit, 0.6):
            found += (t for t in texts[match] if t not in found)
    return found[:limit]


def did_you_mean(cluster: Cluster, name: str, namespace: str) -> str:
    """`did you mean ...?` with the close matches of `name`, or the pods of `namespace`."""
    matches = close_matches(cluster, name)
    if matches:
        return f"did you mean {' or '.join(matches)}?"
    here = (p.name for p in cluster.pods.values() if p.namespace == namespace)
    return _listing(f"pods in namespace {namespace!r}", here)


def ip_of(cluster: Cluster, text: str, loc: Loc | None = None) -> IPv4Address:
    """The address an endpoint stands for (pod, node, ClusterIP, external host, literal)."""
    ep = resolve_endpoint(cluster, text, loc)
    if ep.kind is EndpointKind.DNS:
        raise _fail(
            text,
            "a DNS name has no address here"
            " (use NS/POD, node/NAME, external/NAME or svc/NS/NAME)",
            loc,
        )
    if ep.ip is None:
        raise _fail(text, "a headless Service has no ClusterIP", loc)
    return ep.ip


def substitute(text: str, cluster: Cluster, loc: Loc | None = None) -> str:
    """`text` with every `${ip:ENDPOINT}` replaced by that endpoint's address."""
    if "${" not in text:
        return text

    def one(match: re.Match[str]) -> str:
        return str(ip_of(cluster, match.group(1).strip(), loc))

    return REF.sub(one, text)


def substitute_deep(data: Any, cluster: Cluster, loc: Loc | None = None) -> Any:
    """`substitute` applied to every string inside nested dicts and lists (a new copy)."""
    if isinstance(data, str):
        return substitute(data, cluster, loc)
    if isinstance(data, dict):
        return {k: substitute_deep(v, cluster, loc) for k, v in data.items()}
    if isinstance(data, list):
        return [substitute_deep(v, cluster, loc) for v in data]
    return data


def owner_of(cluster: Cluster, ip: IPv4Address) -> Endpoint | None:
    """The pod (not hostNetwork), node or external host that has address `ip`, if any."""
    for pod in cluster.pods.values():
        if pod.ip == ip and not pod.host_network:
            return Endpoint(
                EndpointKind.POD,
                text=pod.key,
                pod=pod,
                container=pod.containers[0].name if pod.containers else None,
                node=cluster.node(pod.node),
                ip=ip,
            )
    for node in cluster.nodes:
        if node.ip == ip:
            return Endpoint(
                EndpointKind.NODE, text=f"node/{node.name}", node=node, ip=ip
            )
    for ext in cluster.config.externals:
        if ext.ip == ip:
            return Endpoint(
                EndpointKind.EXTERNAL, text=f"external/{ext.name}", external=ext, ip=ip
            )
    return None
