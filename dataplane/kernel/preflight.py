"""Can this machine build the cluster on its own kernel?  One line says why not.

`dataplane verify` needs: root (or CAP_NET_ADMIN and CAP_SYS_ADMIN: namespaces are
created with `unshare` and bind mounts), the `ip` (iproute2) and `nft` (nftables) tools,
and br_netfilter (bridged pod-to-pod traffic must pass the netfilter hooks, as it does on
every Kubernetes node, or Services and same-node policies cannot work).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21


def _capabilities() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def has_bridge_netfilter() -> bool:
    """Whether br_netfilter is there (its sysctls appear once the module is loaded)."""
    if Path("/proc/sys/net/bridge/bridge-nf-call-iptables").exists():
        return True
    modprobe = shutil.which("modprobe")
    if modprobe is not None:
        subprocess.run(
            [modprobe, "-q", "br_netfilter"], capture_output=True, check=False
        )
    return Path("/proc/sys/net/bridge/bridge-nf-call-iptables").exists()


def reason_not_to_run() -> str | None:
    """Why the kernel backend cannot run here, in one line; None when it can."""
    caps = _capabilities()
    needed = (1 << CAP_NET_ADMIN) | (1 << CAP_SYS_ADMIN)
    if os.geteuid() != 0 and caps & needed != needed:
        return "not root (network namespaces need CAP_NET_ADMIN and CAP_SYS_ADMIN)"
    if caps & needed != needed:
        return (
            "no CAP_NET_ADMIN/CAP_SYS_ADMIN in this process (a restricted container?)"
        )
    # conntrack: kube-proxy's random endpoint choice is read back with `conntrack -L`
    for tool, package in (
        ("ip", "iproute2"),
        ("nft", "nftables"),
        ("conntrack", "conntrack"),
    ):
        if shutil.which(tool) is None:
            return f"no `{tool}` command (install {package})"
    if not has_bridge_netfilter():
        return (
            "br_netfilter is not loaded (`modprobe br_netfilter`): without it bridged "
            "pod traffic skips netfilter, as on no Kubernetes node"
        )
    return None
