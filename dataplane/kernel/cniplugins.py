"""The pods of the flannel profiles, attached by the upstream CNI plugins as a container
runtime attaches them (issue 13): Debian's `containernetworking-plugins` in /usr/lib/cni.

For each pod the runtime (containerd's CRI plugin, through libcni) runs, in the node's
namespace, with the pod's namespace already made:
- `loopback` with CNI_IFNAME=lo (containerd sets the pod's `lo` up this way);
- the conflist that kube-flannel.yml's `cni-conf.json` installs (name `cbr0`:
  `flannel` with `delegate: {hairpinMode: true, isDefaultGateway: true}`, then
  `portmap` with `capabilities: {portMappings: true}`), where the `flannel` plugin
  (flannel-io/cni-plugin flannel_linux.go `doCmdAdd`) delegates to `bridge` with the
  config it assembles from subnet.env: `name` cbr0, `type` bridge, `ipMasq` the opposite
  of FLANNEL_IPMASQ (kube-flannel runs flanneld with `--ip-masq`, so false), `mtu`
  FLANNEL_MTU, `isGateway` true, and `ipam` host-local with `ranges: [[{subnet:
  FLANNEL_SUBNET}]]` and `routes: [{dst: FLANNEL_NETWORK}]` (`getDelegateIPAM`).  The
  delegate is run here directly (the flannel binary is not packaged by Debian): the
  config it is given is the one `doCmdAdd` writes.  `bridge` names the bridge by its
  `bridge` key, which flannel's delegate leaves out (the plugin's default `cni0`): here it
  is the simulator's bridge name (`cluster.bridge`, default `cbr0`, as kubenet named it),
  so that every other part of the model finds it.
- `portmap` gets the bridge's result as `prevResult` and kubelet's `runtimeConfig`
  `portMappings` (the pod's `hostPort`s, `dataplane.portmap.Mapping.runtime_config`).

CNI_COMMAND=DEL runs in the reverse order (libcni's `DelNetworkList`) when the cluster is
removed, even after a failed build.  host-local keeps its state in a directory of the run
(`dataDir`, one per node as each node's kubelet has its own /var/lib/cni), removed with
the run.  Where the kernel's choices differ from the simulator's they are checked
(`Attachment.check`): the address host-local hands out must be the simulator's IPAM's.
Devices the plugins name at random are renamed to the model's names once made (the host
end of the veth: the plugin's `veth` + 8 random hex digits, the model's `veth` + 8 hex
digits of a hash of the pod's key), and the MACs are the kernel's random ones (the
plugin no longer derives them from the address).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

from dataplane import portmap
from dataplane.kernel import netns, owner
from dataplane.portmap import container_id
from topology.model import ClusterConfig, Cni, NodeSpec

CNI_PATH = Path("/usr/lib/cni")
PACKAGE = "containernetworking-plugins"
CNI_VERSION = "0.3.1"  # kube-flannel.yml's cni-conf.json
NETWORK = portmap.NETWORK  # cni-conf.json's "name"
DEL_WORKERS = 8  # CNI DELs at once when a cluster is removed (each a plugin process)


class CniError(OSError):
    """A plugin refused: which pod, which plugin, and what it said."""


def missing() -> str | None:
    """Why the plugins cannot be used here, or None."""
    for plugin in ("bridge", "host-local", "portmap", "loopback"):
        if not os.access(CNI_PATH / plugin, os.X_OK):
            return f"{CNI_PATH / plugin} is missing (Debian package {PACKAGE})"
    return None


def version() -> str:
    """The packaged version (`1.1.1` of `1.1.1+ds1-3+b5`): the plugins of this package
    print `version unknown`, so dpkg is asked."""
    try:
        done = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", PACKAGE],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return "version unknown"
    text = done.stdout.strip()
    if done.returncode != 0 or not text:
        return "version unknown"
    return text.split(":")[-1].split("+")[0].split("-")[0]


def uses_plugins(config: ClusterConfig) -> bool:
    """Whether the pods of this cluster are attached by the upstream plugins: the
    flannel profiles (vxlan, host-gw and routed all use flannel's bridge delegate; `ptp`
    is not what the simulator models for `routed`, which keeps the node's bridge)."""
    return config.cni is Cni.FLANNEL


def flannel_network(config: ClusterConfig) -> IPv4Network:
    """What stands for net-conf.json's `Network` (subnet.env FLANNEL_NETWORK): the model
    has no cluster CIDR, so the smallest network holding every node's podCIDR (flannel's
    leases are all inside `Network`)."""
    nets = [n.pod_cidr for n in config.nodes]
    net = nets[0]
    while not all(n.subnet_of(net) for n in nets):
        net = net.supernet()
    return net


def delegate(config: ClusterConfig, node: NodeSpec, data_dir: Path) -> dict[str, Any]:
    """The `bridge` config flannel's `doCmdAdd` hands on for `node` (see the module)."""
    subnet = IPv4Network(node.pod_cidr)
    return {
        "cniVersion": CNI_VERSION,
        "name": NETWORK,
        "type": "bridge",
        "bridge": config.bridge,
        "hairpinMode": True,
        "isDefaultGateway": True,
        "isGateway": True,
        "ipMasq": False,
        "mtu": config.pod_mtu,
        "ipam": {
            "type": "host-local",
            "dataDir": str(data_dir),
            "ranges": [[{"subnet": str(subnet)}]],
            "routes": [{"dst": str(flannel_network(config))}],
        },
    }


def portmap_conf(
    result: dict[str, Any], mappings: list[dict[str, Any]]
) -> dict[str, Any]:
    """The conflist's `portmap` entry as libcni runs it: the previous plugin's result
    and kubelet's `portMappings` (`capabilities: {portMappings: true}`)."""
    return {
        "cniVersion": CNI_VERSION,
        "name": NETWORK,
        "type": "portmap",
        "capabilities": {"portMappings": True},
        "runtimeConfig": {"portMappings": mappings},
        "prevResult": result,
    }


LOOPBACK = {"cniVersion": CNI_VERSION, "name": "cni-loopback", "type": "loopback"}


@dataclass(slots=True)
class Attachment:
    """One pod attached: what DEL needs, and what the plugins made."""

    pod: str  # NS/NAME
    node: str  # the model's node name
    node_ns: str  # kernel namespace of the node
    pod_ns: str  # kernel namespace of the pod
    configs: list[tuple[str, dict[str, Any]]]  # (ifname, config), in ADD order
    address: IPv4Interface | None = None
    host_veth: str = ""  # the name the bridge plugin gave the host end


@dataclass(slots=True)
class CniRuntime:
    """The runtime's side of CNI for one run: ADD, DEL and host-local's state."""

    run_id: str
    state: Path = field(init=False)
    attached: list[Attachment] = field(default_factory=list)
    # pod -> (node, address) of every pod detached when a cluster was torn down to be
    # built again (`LiveCluster.update`): a pod that is still there kept its sandbox in
    # a real cluster, so it asks host-local for its address back (see `attach`)
    held: dict[str, tuple[str, IPv4Address]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.state = owner.cni_state(self.run_id)

    def data_dir(self, node: str) -> Path:
        path = self.state / node
        path.mkdir(parents=True, exist_ok=True)
        return path

    def attach(
        self,
        config: ClusterConfig,
        node: NodeSpec,
        pod_key: str,
        node_ns: str,
        pod_ns: str,
        mappings: list[dict[str, Any]] | None = None,
        ask: IPv4Address | None = None,
        keep_last: bool = False,
    ) -> Attachment:
        """ADD: loopback, then the conflist (bridge, portmap), as a runtime does.

        `ask`: an address to ask host-local for (its `IP` argument in CNI_ARGS), when
        the address is not host-local's to choose: one the scenario gives (a dump's
        `status.podIP`), or one a pod held before its namespace was made anew (the
        cluster rebuilt around it); with `keep_last` host-local's `last_reserved_ip` is
        put back afterwards, so that the next new pod gets the address it would have had
        had this pod never left."""
        att = Attachment(pod_key, node.name, node_ns, pod_ns, [])
        self.attached.append(att)  # DEL even a half-made attachment
        cid = container_id(pod_key)
        att.configs.append(("lo", dict(LOOPBACK)))
        self._run("ADD", att, cid, "lo", LOOPBACK)
        bridge = delegate(config, node, self.data_dir(node.name))
        att.configs.append(("eth0", bridge))
        last = self.data_dir(node.name) / NETWORK / "last_reserved_ip.0"
        before = last.read_text() if keep_last and last.exists() else None
        args = f"IgnoreUnknown=1;IP={ask}" if ask is not None else ""
        result = self._run("ADD", att, cid, "eth0", bridge, args)
        if before is not None:
            last.write_text(before)
        pm = portmap_conf(result, mappings or [])
        att.configs.append(("eth0", pm))
        self._run("ADD", att, cid, "eth0", pm)
        for ip in result.get("ips", []):
            addr = IPv4Interface(ip["address"])
            if addr.version == 4:
                att.address = addr
        for iface in result.get("interfaces", []):
            if "sandbox" not in iface and iface.get("name") != config.bridge:
                att.host_veth = str(iface.get("name", ""))
        return att

    def attach_portmap(
        self,
        network: str,
        pod_key: str,
        node: str,
        node_ns: str,
        pod_ns: str,
        address: IPv4Interface,
        mappings: list[dict[str, Any]],
    ) -> Attachment:
        """ADD of `portmap` alone, after a plugin that is not run here (Calico's):
        `prevResult` is what that plugin returns (the pod's address on eth0)."""
        att = Attachment(pod_key, node, node_ns, pod_ns, [], address)
        self.attached.append(att)
        result = {
            "cniVersion": CNI_VERSION,
            "interfaces": [{"name": "eth0", "sandbox": f"/run/netns/{pod_ns}"}],
            "ips": [{"version": "4", "address": str(address), "interface": 0}],
        }
        conf = {**portmap_conf(result, mappings), "name": network}
        att.configs.append(("eth0", conf))
        self._run("ADD", att, container_id(pod_key), "eth0", conf)
        return att

    def detach(self, att: Attachment) -> list[str]:
        """DEL one attachment, its plugins in reverse order (libcni's
        `DelNetworkList`); the errors, as lines (a failed DEL does not stop the rest)."""
        if att in self.attached:
            self.attached.remove(att)
        errors: list[str] = []
        cid = container_id(att.pod)
        for ifname, conf in reversed(att.configs):
            try:
                self._run("DEL", att, cid, ifname, conf)
            except OSError as err:
                errors.append(str(err))
        return errors

    def _run(
        self,
        command: str,
        att: Attachment,
        cid: str,
        ifname: str,
        conf: dict[str, Any],
        args: str = "",
    ) -> dict[str, Any]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": cid,
            "CNI_NETNS": f"/run/netns/{att.pod_ns}",
            "CNI_IFNAME": ifname,
            "CNI_PATH": str(CNI_PATH),
        }
        if args:
            env["CNI_ARGS"] = args
        plugin = str(conf["type"])
        done = netns.execute(
            att.node_ns, [str(CNI_PATH / plugin)], json.dumps(conf), env
        )
        if done.returncode != 0:
            raise CniError(
                errno.EIO,
                f"CNI {command} of pod {att.pod} ({plugin} plugin, CNI_IFNAME={ifname}):"
                f" {_message(done.stdout, done.stderr)}",
            )
        if not done.stdout.strip():
            return {}
        out: dict[str, Any] = json.loads(done.stdout)
        return out

    def detach_all(self) -> list[str]:
        """DEL every attachment; the errors, in the order the attachments were made, the
        last first.  The addresses they held are remembered (`held`) for a rebuild of the
        same cluster.  The pods' DELs run side by side, as kubelet runs its pods' CNI
        calls: each attachment's plugins in their own reverse order, host-local's and
        portmap's shared state behind their own locks (host-local's lock file, iptables'
        `--wait`)."""
        atts = list(reversed(self.attached))
        for att in atts:
            if att.address is not None:
                self.held[att.pod] = (att.node, att.address.ip)
        with ThreadPoolExecutor(max_workers=DEL_WORKERS) as pool:
            results = list(pool.map(self.detach, atts))
        return [line for errors in results for line in errors]


def remove_state(run_id: str) -> None:
    """Remove what host-local kept for a run (after its namespaces are gone)."""
    shutil.rmtree(owner.cni_state(run_id), ignore_errors=True)


def _message(stdout: str, stderr: str) -> str:
    """The plugin's error: its JSON `msg` (and `details`), else what it printed."""
    try:
        doc = json.loads(stdout)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and "msg" in doc:
        details = f": {doc['details']}" if doc.get("details") else ""
        return f"{doc['msg']}{details}"
    return (stderr or stdout).strip() or "no output"


def differs(att: Attachment, ip: IPv4Address) -> str | None:
    """Why host-local's address is not the simulator's, or None."""
    if att.address is None:
        return f"host-local gave pod {att.pod} no IPv4 address"
    if att.address.ip != ip:
        return (
            f"host-local chose {att.address.ip} for pod {att.pod}, the model has {ip}"
        )
    return None
