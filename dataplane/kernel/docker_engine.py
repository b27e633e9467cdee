"""The Docker hosts of a `runtime: docker` scenario on this kernel, made by Docker Engine.

The simulator's Docker model (`topology.docker`, `dataplane.cni.docker`) is not used to
build anything here: each host gets a real `dockerd` (Debian's `docker.io`, 20.10) in the
host's namespace, and its networks and containers are made with the `docker` CLI from the
scenario's *compose input* (`topology.compose.ComposeProject`, the user's records), the
way Compose v2 makes them (compose-spec and docker/compose `pkg/compose/create.go`).
Bridges, veths, addresses, the embedded DNS, every iptables rule (nat `DOCKER`,
`MASQUERADE`, filter `DOCKER-USER`, `DOCKER-ISOLATION-STAGE-1/2`) and the `docker-proxy`
processes are the Engine's own.  What the simulator gives is only the rest of the
scenario, built as for Kubernetes nodes (`dataplane.kernel.build`): the hosts' own
namespaces with their underlay port, the externals and the underlay.  The servers are the
project's listeners (`probe.Listeners`), opened in the containers' namespaces.

How each host's daemon runs (`Daemon`):
- in the host's namespace only, entered with `nsenter --net` (not `ip netns exec`, which
  also mounts a new /sys and so hides the cgroup hierarchies dockerd needs);
- with private `--data-root`, `--exec-root`, `--pidfile`, `--host` socket and config
  under `leftovers.state_dir(run id)/<host>`, the `vfs` storage driver (no overlay
  mounts), `--cgroup-parent /<run id>/<host>`, and its own containerd;
- one image, `dataplane/busybox:1`, imported (`docker import`) from a root filesystem
  holding Debian's busybox-static; every container runs its `sleep`.

A container's namespace is named `<run id>-pod-<host>.<container>` (`netns.adopt`), so
the probes and listeners find it and a killed run's leftovers are found by their run id
(`dataplane.kernel.leftovers`).
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import tarfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from topology.compose import ComposeProject, ComposeService, PortSpec

DOCKERD = Path("/usr/sbin/dockerd")  # Debian's docker.io (another `docker` may be first
DOCKER = Path(
    "/usr/bin/docker"
)  # on PATH: /usr/local/bin's is not the daemon's version)
BUSYBOX = Path("/bin/busybox")  # busybox-static: one static binary, no libraries
IMAGE = "dataplane/busybox:1"
SLEEP = ("/bin/sleep", "2147483647")
START_TIMEOUT = 60.0  # seconds for a daemon to answer on its socket
DEFAULT_NETWORK = "default"


class EngineError(OSError):
    """Docker Engine refused a step: which host, which command, and what it said."""

    def __init__(self, host: str, what: str, why: str) -> None:
        super().__init__(why)
        self.message = f"Docker Engine on {host}: {what}: {why}"

    def __str__(self) -> str:
        return self.message


def reason_not_to_run() -> str | None:
    """Why this machine cannot run Docker Engine for verify, in one line; None if it can."""
    for path, package in (
        (DOCKERD, "docker.io"),
        (DOCKER, "docker.io"),
        (BUSYBOX, "busybox-static"),
    ):
        if not path.exists():
            return f"no {path} (install Debian's {package})"
    for tool, package in (
        ("containerd", "containerd"),
        ("runc", "runc"),
        ("nsenter", "util-linux"),
    ):
        if shutil.which(tool) is None:
            return f"no `{tool}` command (install {package})"
    return None


def engine_version() -> str:
    """`dockerd --version` as the builder's name: `Docker Engine 20.10.24+dfsg1 dockerd`."""
    out = subprocess.run(
        [str(DOCKERD), "--version"], capture_output=True, text=True, check=False
    ).stdout
    m = re.search(r"version (\S+?),", out)
    return f"Docker Engine {m.group(1) if m else 'unknown'} dockerd"


def rootfs_tar() -> bytes:
    """The image's root filesystem: `bin/busybox` and its `sleep`."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(str(BUSYBOX), arcname="bin/busybox")
        link = tarfile.TarInfo("bin/sleep")
        link.type, link.linkname = tarfile.SYMTYPE, "busybox"
        tar.addfile(link)
    return buf.getvalue()


@dataclass(slots=True)
class Daemon:
    """One host's dockerd (see the module docstring)."""

    host: str
    kernel_ns: str  # the host's namespace, /run/netns/<kernel_ns>
    root: Path  # its private directory
    cgroup: str  # --cgroup-parent
    proc: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        return self.root / "docker.sock"

    def start(self) -> None:
        """Start dockerd (it answers later: `wait`)."""
        self.root.mkdir(parents=True)
        config = self.root / "daemon.json"
        # the daemon's identity key, which dockerd 20.10 otherwise writes to /etc/docker
        config.write_text(json.dumps({"deprecated-key-path": str(self.root / "key")}))
        argv = [
            "nsenter",
            f"--net=/run/netns/{self.kernel_ns}",
            str(DOCKERD),
            f"--config-file={config}",
            f"--data-root={self.root / 'data'}",
            f"--exec-root={self.root / 'exec'}",
            f"--pidfile={self.root / 'docker.pid'}",
            f"--host=unix://{self.socket}",
            "--storage-driver=vfs",
            f"--cgroup-parent={self.cgroup}",
        ]
        with (self.root / "dockerd.log").open("wb") as log:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )

    def log_tail(self, lines: int = 3) -> str:
        try:
            text = (self.root / "dockerd.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""
        kept = [ln for ln in text.splitlines() if "module=grpc" not in ln]
        return " | ".join(kept[-lines:])

    def wait(self, timeout: float = START_TIMEOUT) -> None:
        """Until the daemon answers `docker version`; an `EngineError` if it ended."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise EngineError(
                    self.host,
                    "starting dockerd",
                    f"it exited with status {self.proc.returncode}: {self.log_tail()}",
                )
            if self.socket.exists():
                done = self._cli(["version", "--format", "{{.Server.Version}}"])
                if done.returncode == 0:
                    return
            if time.monotonic() > deadline:
                raise EngineError(
                    self.host,
                    "starting dockerd",
                    f"no answer in {timeout:.0f} s: {self.log_tail()}",
                )
            time.sleep(0.05)

    def _cli(
        self, args: Sequence[str], stdin: bytes | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [str(DOCKER), "--host", f"unix://{self.socket}", *args],
            input=stdin,
            capture_output=True,
            check=False,
        )

    def docker(self, *args: str, stdin: bytes | None = None) -> str:
        """Run `docker ARGS` against this daemon; its output, or an `EngineError`."""
        done = self._cli(args, stdin)
        if done.returncode != 0:
            why = done.stderr.decode(errors="replace").strip()
            raise EngineError(self.host, f"docker {' '.join(args)}", why)
        return done.stdout.decode(errors="replace").strip()


def port_argument(spec: PortSpec) -> str:
    """A `ports` item as `docker create -p` takes it: `[IP:][PUBLISHED:]TARGET/PROTO`.

    >>> from ipaddress import IPv4Address
    >>> from topology.model import Loc, Protocol
    >>> port_argument(PortSpec((80, 80), (8080, 8080), None, Protocol.TCP, Loc("f")))
    '8080:80/tcp'
    >>> port_argument(PortSpec((53, 53), None, IPv4Address("127.0.0.1"), Protocol.UDP,
    ...     Loc("f")))
    '127.0.0.1::53/udp'
    """

    def span(r: tuple[int, int]) -> str:
        return str(r[0]) if r[0] == r[1] else f"{r[0]}-{r[1]}"

    target = f"{span(spec.target)}/{spec.protocol.value.lower()}"
    published = span(spec.published) if spec.published is not None else ""
    if spec.host_ip is not None:
        return f"{spec.host_ip}:{published}:{target}"
    return f"{published}:{target}" if published else target


def uses_default(service: ComposeService) -> bool:
    """Compose attaches a service to `<project>_default` when it names no network and
    has no `network_mode` (compose-spec, "networks": the implicit `default`)."""
    return service.network_mode is None and (
        not service.networks
        or any(a.network == DEFAULT_NETWORK for a in service.networks)
    )


def container_names(project: ComposeProject, service: ComposeService) -> list[str]:
    """Compose v2's names: `container_name`, or `<project>-<service>-<n>` per replica."""
    if service.container_name is not None:
        return [service.container_name]
    return [
        f"{project.project}-{service.name}-{n}" for n in range(1, service.replicas + 1)
    ]


def plan_project(project: ComposeProject) -> tuple[list[list[str]], list[str]]:
    """The docker CLI commands that make a project's networks and containers, as
    `docker compose up` makes them, and the containers' names in creation order.

    The order is the one the simulator documents (`topology.docker`): the project's
    `<project>_default` network first when a service uses it, the declared networks in
    the order written (an `external` one must exist: `docker
    network inspect`), then service by service, replica by replica: `docker create` on
    the first network, `docker start`, `docker network connect` for each other one."""
    labels = ["--label", f"com.docker.compose.project={project.project}"]
    declared = {n.key: n for n in project.networks}
    order = list(declared)
    names: dict[str, str] = {k: n.name for k, n in declared.items()}
    commands: list[list[str]] = []
    if any(uses_default(s) for s in project.services):
        order = [DEFAULT_NETWORK, *(k for k in order if k != DEFAULT_NETWORK)]
        names.setdefault(DEFAULT_NETWORK, f"{project.project}_default")
    for key in order:
        net = declared.get(key)
        if net is not None and net.external:
            commands.append(["network", "inspect", "--format", "{{.Id}}", net.name])
            continue
        args = ["network", "create", "--driver", "bridge", *labels]
        if net is not None and net.internal:
            args.append("--internal")
        if net is not None and net.subnet is not None:
            args += ["--subnet", str(net.subnet)]
        if net is not None and net.gateway is not None:
            args += ["--gateway", str(net.gateway)]
        commands.append([*args, names[key]])
    containers: list[str] = []
    for service in project.services:
        for name in container_names(project, service):
            commands += _container_commands(project, service, name, names)
            containers.append(name)
    return commands, containers


def _container_commands(
    project: ComposeProject,
    service: ComposeService,
    name: str,
    networks: dict[str, str],
) -> list[list[str]]:
    args = ["create", "--name", name]
    args += ["--label", f"com.docker.compose.project={project.project}"]
    args += ["--label", f"com.docker.compose.service={service.name}"]
    if service.hostname is not None:
        args += ["--hostname", service.hostname]
    mode = service.network_mode
    later: list[list[str]] = []
    if mode is not None and mode.startswith("service:"):
        target = mode.split(":", 1)[1]
        other = next(s for s in project.services if s.name == target)
        args += ["--network", f"container:{container_names(project, other)[0]}"]
    elif mode is not None:
        args += ["--network", mode]  # bridge, host, none, container:NAME
    else:
        attachments = list(service.networks)
        keys = [a.network for a in attachments] or [DEFAULT_NETWORK]
        for i, key in enumerate(keys):
            a = attachments[i] if attachments else None
            extra: list[str] = []
            if a is not None and a.ipv4_address is not None:
                extra += ["--ip", str(a.ipv4_address)]
            # Compose gives every container its service name as an alias
            # (pkg/compose/create.go `getAliases`), then the `aliases` written
            aliases = dict.fromkeys([service.name, *(a.aliases if a else ())])
            if i == 0:
                args += ["--network", networks[key], *extra]
                args += [x for al in aliases for x in ("--network-alias", al)]
            else:
                later.append(
                    [
                        "network",
                        "connect",
                        *extra,
                        *(x for al in aliases for x in ("--alias", al)),
                        networks[key],
                        name,
                    ]
                )
    for spec in service.ports:
        args += ["--publish", port_argument(spec)]
    for port, protocol in service.expose:
        args += ["--expose", f"{port}/{protocol.value.lower()}"]
    # Started on its first network, then connected to each other one, in the order
    # written.  Compose connects them before `docker start`, and Engine 20.10 then
    # joins them in Go map order (daemon `allocateNetwork`): which endpoint had the
    # gateway first, so an omitted host port's number, could differ from run to run.
    # Joined one by one, it is the simulator's order (topology.docker `_join`).
    return [[*args, IMAGE, *SLEEP], ["start", name], *later]


def container_pid(daemon: Daemon, name: str) -> int:
    """The pid of a running container's first process (its namespaces are its)."""
    return int(daemon.docker("inspect", "--format", "{{.State.Pid}}", name))


@dataclass(frozen=True, slots=True)
class Seen:
    """A container as Docker Engine made it (`docker inspect`): its first process, its
    address on each network, and its published ports (`HOST_IP:PORT/PROTO` -> the
    container's `PORT/PROTO`), on the network of its default route."""

    host: str
    name: str
    pid: int
    network_mode: str
    addresses: dict[str, str]
    ports: dict[str, str]
    # the network of its default route, where libnetwork programs the published ports
    # (the sandbox's gateway endpoint, `Sandbox.getGatewayEndpoint`; "-" without one)
    port_network: str = "-"


class Engine:
    """Every Docker host of one run: their daemons, the image, the projects."""

    def __init__(self, run_id: str, root: Path, cgroup: str) -> None:
        self.run_id = run_id
        self.root = root
        self.cgroup = cgroup
        self.daemons: dict[str, Daemon] = {}
        self.made: list[tuple[str, str]] = []  # (host, container) in creation order

    def start(self, hosts: dict[str, str]) -> None:
        """One dockerd per host (host -> its kernel namespace), started together, then
        the image imported into each."""
        for host, kernel_ns in hosts.items():
            d = Daemon(host, kernel_ns, self.root / host, f"{self.cgroup}/{host}")
            self.daemons[host] = d
            d.start()
        image = rootfs_tar()
        for d in self.daemons.values():
            d.wait()
            d.docker("import", "-", IMAGE, stdin=image)

    def forget(self) -> None:
        """Collect the daemons once they are killed (`leftovers.remove`): no zombie,
        and no `Popen` left to warn that its process still runs."""
        for d in self.daemons.values():
            if d.proc is not None:
                d.proc.wait(timeout=5)
                d.proc = None

    def build(self, projects: Sequence[ComposeProject]) -> None:
        """Make every project on its host (`plan_project`): the hosts at once, each
        host's projects in the scenario's order."""
        by_host: dict[str, list[ComposeProject]] = {}
        for project in projects:
            by_host.setdefault(project.node, []).append(project)

        def make(host: str) -> list[tuple[str, str]]:
            made = []
            for project in by_host[host]:
                commands, containers = plan_project(project)
                for argv in commands:
                    self.daemons[host].docker(*argv)
                made += [(host, c) for c in containers]
            return made

        with ThreadPoolExecutor(max_workers=max(1, len(by_host))) as pool:
            done = dict(zip(by_host, pool.map(make, by_host), strict=True))
        self.made += [c for project in projects for c in done.pop(project.node, [])]

    def inspect(self) -> list[Seen]:
        """Every container made, as the Engine reports it."""
        out = []
        for host, name in self.made:
            d = self.daemons[host]
            info = json.loads(d.docker("inspect", name))[0]
            nets = info["NetworkSettings"]["Networks"] or {}
            ports = {
                f"{b['HostIp']}:{b['HostPort']}/{cport.split('/')[1]}": cport
                for cport, binds in (info["NetworkSettings"]["Ports"] or {}).items()
                for b in binds or ()
                if ":" not in b["HostIp"]  # the IPv6 twin of a binding
            }
            pid = int(info["State"]["Pid"])
            gateway = default_gateway(pid)
            out.append(
                Seen(
                    host,
                    name,
                    pid,
                    str(info["HostConfig"]["NetworkMode"]),
                    {k: v["IPAddress"] for k, v in nets.items() if v["IPAddress"]},
                    ports,
                    next(
                        (
                            k
                            for k, v in nets.items()
                            if gateway and v["Gateway"] == gateway
                        ),
                        "-",
                    ),
                )
            )
        return out


def default_gateway(pid: int) -> str:
    """The gateway of the default route in the network namespace of process `pid`
    (`ip route show default`), "" without one."""
    done = subprocess.run(
        [
            "nsenter",
            f"--net=/proc/{pid}/ns/net",
            "ip",
            "-4",
            "route",
            "show",
            "default",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    m = re.search(r"default via (\S+)", done.stdout)
    return m.group(1) if m else ""


def kernel_side() -> dict[str, str]:
    """What built each part of a Docker host on this kernel (`verify -o json`
    `kernel_side`; see `dataplane.kernel.report.KERNEL_SIDE` for Kubernetes nodes)."""
    engine = engine_version()
    return {
        "hosts, externals, underlay (namespaces, ports, routes)": (
            "pyroute2 from the simulator's own model (dataplane.fabric.build_fabric)"
        ),
        "Docker networks, bridges, veths, container namespaces and addresses": (
            f"{engine}, from the scenario's compose input (docker network create, "
            "docker create, docker network connect)"
        ),
        "Docker iptables (nat DOCKER, MASQUERADE, DOCKER-USER, DOCKER-ISOLATION)": (
            f"{engine}'s own rules"
        ),
        "published ports and docker-proxy": f"{engine} (its port allocator and proxy)",
        "IP stack, conntrack, br_netfilter, ICMP, ARP": (
            "this machine's Linux kernel (sysctls as for Kubernetes nodes)"
        ),
        "servers and clients": "Python sockets: wildcard-bound listeners, connecting clients",
    }
