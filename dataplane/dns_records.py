"""What CoreDNS answers in the simulated cluster, as data: the A records of a name
(`records`, the `kubernetes` plugin with `pods insecure`; see `dataplane.dns`) and the
addresses behind the `domainNames` peers of admin policies (`domain_networks`).

A `domainNames` peer (network-policy-api NPEP-133, `apis/v1alpha1`
`AdminNetworkPolicyEgressPeer.DomainNames`, `apis/v1alpha2` `ClusterNetworkPolicyEgressPeer`)
matches the addresses the DNS answers for its names: an exact name (`kubernetes.io`), or
`*.` and a name, which "matches one or more entire labels" before it (`*.kubernetes.io`:
`www.kubernetes.io` and `a.b.kubernetes.io`, not `kubernetes.io`).  The simulated DNS is
the cluster's CoreDNS with no upstream, and its answers never change between probes, so
a pod that sends to an address is taken to have resolved it (NPEP-133 "Expected Behavior":
"Pods are expected to make a DNS query for a domain before sending traffic to it"):

- `POD-IP.NS.pod.DOMAIN` names (`pods insecure` answers any address so written, in a
  namespace that exists) and headless Services' names select their addresses (the NPEP's
  "Supported" in-cluster cases); a wildcard over `NS.pod.DOMAIN` covers every address;
- a ClusterIP Service's name answers its ClusterIP, which a policy never sees (it judges
  the connection after kube-proxy's DNAT: the NPEP's "Not Supported");
- any other name is NXDOMAIN here (no upstream resolver), so it matches no address:
  `dataplane lint` says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, collapse_addresses

from dataplane import kubeproxy
from topology.model import Cluster, Pod, Service

NOERROR, SERVFAIL, NXDOMAIN = 0, 2, 3
EVERY_ADDRESS = IPv4Network("0.0.0.0/0")


@dataclass(frozen=True, slots=True)
class Record:
    """What CoreDNS knows of a name: the rcode, the A records and what they stand for."""

    rcode: int
    addresses: tuple[str, ...] = ()
    service: Service | None = None
    pods: tuple[Pod, ...] = ()  # a headless Service's pods, in answer order


def records(cluster: Cluster, qname: str) -> Record:
    """CoreDNS's answer for an A query of `qname` (see `dataplane.dns`)."""
    name = qname.rstrip(".").lower()
    domain = cluster.config.cluster_domain.lower()
    if not name.endswith("." + domain):
        return Record(NXDOMAIN)
    labels = name[: -len(domain) - 1].split(".")
    if len(labels) == 3 and labels[2] == "svc":
        svc = cluster.services.get(f"{labels[1]}/{labels[0]}")
        if svc is None:
            return Record(NXDOMAIN)
        if svc.cluster_ip is not None:
            return Record(NOERROR, (str(svc.cluster_ip),), svc)
        pods = kubeproxy.selected_pods(cluster, svc)
        return Record(NOERROR, tuple(str(p.ip) for p in pods), svc, pods)
    if len(labels) == 3 and labels[2] == "pod" and labels[1] in cluster.namespaces:
        try:
            return Record(NOERROR, (str(IPv4Address(labels[0].replace("-", "."))),))
        except ValueError:
            return Record(NXDOMAIN)
    return Record(NXDOMAIN)


def _is_under(name: str, suffix: str) -> bool:
    """Whether `*.suffix` matches `name`: one or more whole labels before `suffix`.

    >>> _is_under("www.kubernetes.io", "kubernetes.io"), _is_under("kubernetes.io", "kubernetes.io")
    (True, False)
    """
    return name.endswith("." + suffix)


def domain_networks(
    cluster: Cluster, names: tuple[str, ...]
) -> tuple[IPv4Network, ...]:
    """The addresses the cluster's DNS answers for `names` (a `domainNames` peer), as
    networks (collapsed; empty when it answers none of them)."""
    domain = cluster.config.cluster_domain.lower()
    found: set[str] = set()
    for written in names:
        name = written.rstrip(".").lower()
        if not name.startswith("*."):
            found |= set(records(cluster, name).addresses)
            continue
        suffix = name[2:]
        if any(
            f"{ns}.pod.{domain}" == suffix or _is_under(f"{ns}.pod.{domain}", suffix)
            for ns in cluster.namespaces
        ):
            return (
                EVERY_ADDRESS,
            )  # `pods insecure`: A-B-C-D.NS.pod.DOMAIN, any address
        for svc in cluster.services.values():
            fqdn = f"{svc.name}.{svc.namespace}.svc.{domain}"
            if _is_under(fqdn, suffix):
                found |= set(records(cluster, fqdn).addresses)
    return tuple(collapse_addresses(IPv4Network(a) for a in sorted(found)))
