"""The names kube-proxy gives its chains, so that a trace shows what `iptables-save` or
`nft list table ip kube-proxy` would.

iptables mode (pkg/proxy/iptables/proxier.go, `portProtoHash`): `KUBE-SVC-`, `KUBE-SVL-`,
`KUBE-EXT-`, `KUBE-FW-` + the first 16 characters of base32(sha256(svcPortName + protocol)),
`KUBE-SEP-` + the same of (svcPortName + protocol + "IP:port"); svcPortName is
`NS/NAME:PORTNAME` (`NS/NAME` for an unnamed port), protocol lower case.

nftables mode (pkg/proxy/nftables/proxier.go, `hashAndTruncate`): `service-`, `local-`,
`external-`, `firewall-` + HASH-NS/NAME/PROTO/PORTNAME, `endpoint-` +
HASH-NS/NAME/PROTO/PORTNAME__IP/PORT, HASH the first 8 characters of base32(sha256(name)).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from topology.model import ProxyMode, Service, ServicePort


def _b32(text: str) -> str:
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()


def port_proto_hash(svc_port_name: str, protocol: str) -> str:
    """iptables mode's 16-character chain suffix.

    >>> port_proto_hash("default/web:http", "tcp")
    'CDGGSHYLG3RE2FKL'
    """
    return _b32(svc_port_name + protocol)[:16]


def hash_and_truncate(name: str) -> str:
    """nftables mode's chain name base: 8 characters of hash, a hyphen, the name."""
    return f"{_b32(name)[:8]}-{name}"[:240]


@dataclass(frozen=True, slots=True)
class ChainNames:
    """The chains of one Service port in one proxy mode."""

    mode: ProxyMode
    svc_port_name: str  # NS/NAME:PORT as kube-proxy's comments
    base: str  # what the per-port chain names are derived from

    @property
    def cluster(self) -> str:
        """The Cluster-policy chain (`KUBE-SVC-…`, `service-…`)."""
        return self._chain("KUBE-SVC-", "service-")

    @property
    def local(self) -> str:
        """The Local-policy chain (`KUBE-SVL-…`, `local-…`)."""
        return self._chain("KUBE-SVL-", "local-")

    @property
    def external(self) -> str:
        """The external-destinations chain (`KUBE-EXT-…`, `external-…`)."""
        return self._chain("KUBE-EXT-", "external-")

    @property
    def firewall(self) -> str:
        """The loadBalancerSourceRanges chain (`KUBE-FW-…`, `firewall-…`)."""
        return self._chain("KUBE-FW-", "firewall-")

    def endpoint(self, ip: str, port: int) -> str:
        """The endpoint chain (`KUBE-SEP-…`, `endpoint-…`)."""
        if self.mode is ProxyMode.NFTABLES:
            return "endpoint-" + hash_and_truncate(f"{self.base}__{ip}/{port}")
        return "KUBE-SEP-" + _b32(f"{self.base}{ip}:{port}")[:16]

    def affinity(self, ip: str, port: int) -> str:
        """Where sessionAffinity remembers an endpoint's clients: the `recent` list named
        after its `KUBE-SEP-…` chain, or the nftables set `affinity-…` (the endpoint
        chain's name base)."""
        if self.mode is ProxyMode.NFTABLES:
            return "affinity-" + hash_and_truncate(f"{self.base}__{ip}/{port}")
        return self.endpoint(ip, port)

    def _chain(self, iptables: str, nftables: str) -> str:
        if self.mode is ProxyMode.NFTABLES:
            return nftables + hash_and_truncate(self.base)
        return iptables + _b32(self.base)[:16]


def chain_names(mode: ProxyMode, svc: Service, sp: ServicePort) -> ChainNames:
    """The chain names of Service port `sp` of `svc` in `mode`."""
    proto = sp.protocol.value.lower()
    port_name = sp.name or ""
    svc_port_name = f"{svc.key}:{port_name}" if port_name else svc.key
    if mode is ProxyMode.NFTABLES:
        base = f"{svc.namespace}/{svc.name}/{proto}/{port_name}"
    else:
        base = svc_port_name + proto
    return ChainNames(mode, svc_port_name, base)
