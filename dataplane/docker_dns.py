"""Docker's embedded DNS server: 127.0.0.11 in every container attached to a user-defined
network (moby libnetwork `resolver.go`; the container's /etc/resolv.conf is
`nameserver 127.0.0.11` with `options ndots:0`, `sandbox_dns_unix.go`).

It answers A queries with the addresses, on the networks the asking container shares with
them, of the containers that carry the name there: the Compose service name, the
`aliases` and the container name (Compose v2 adds the service name and the container name
as network aliases).  A service with several replicas answers every replica, in creation
order.  The default bridge `docker0` has no embedded DNS (its containers get the host's
resolv.conf), and names it does not know would be forwarded to the host's resolvers, which
the simulated hosts do not have: NXDOMAIN here.  The server is bound to 127.0.0.11 (in
Linux a socket on another port that iptables rules in the container's namespace DNAT
to; here a UDP socket bound to 127.0.0.11:53).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dataplane.dns import DNSMessage
from dataplane.dns_records import NOERROR, NXDOMAIN
from dataplane.netns import Netns, Socket
from dataplane.packet import Packet
from dataplane.sockets import APPS
from topology.docker import EMBEDDED_DNS_OWNER
from topology.dockercluster import lookup

if TYPE_CHECKING:  # pragma: no cover
    from dataplane.walker import Walker


def embedded_dns(w: Walker, ns: Netns, sock: Socket, pkt: Packet) -> DNSMessage | None:
    """The application behind 127.0.0.11:53 (None: not a DNS query)."""
    query = (
        pkt.app if isinstance(pkt.app, DNSMessage) else DNSMessage.from_bytes(pkt.data)
    )
    if query is None or query.response:
        return None
    if query.qtype != "A":
        return query.reply(NOERROR)
    runtime, pod = w.cluster.docker, ns.pod
    assert runtime is not None and pod is not None
    found = lookup(runtime, pod, query.qname)
    return query.reply(NOERROR if found else NXDOMAIN, found)


APPS[EMBEDDED_DNS_OWNER] = embedded_dns
