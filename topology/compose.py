"""Compose projects as a scenario's `compose` list gives them: parsed, checked, located.

This is the parsed input, not the Docker model: `topology.docker` turns these records into
networks, addresses and published ports as Docker Engine would.  Both the simulator and
the real-engine oracle (`verify`) read these records, so they are a stable interface:

- `ComposeProject(node, project, services, networks, loc)`: one project on one host;
- `ComposeService`: one service, its networking keys only (`network_mode`, `networks`,
  `ports`, `expose`, `hostname`, `container_name`, `replicas`);
- `ComposeNetwork`: one top-level network (`driver`, `internal`, `external`, `name`,
  `ipam.config[0]` subnet and gateway);
- `PortSpec` (`topology.composeparts`): one `ports` item, ranges kept as ranges.

The keys are the Compose Specification's (compose-spec/compose-spec, spec.md: "Services
top-level elements", "Networks top-level elements"; the `ports` short syntax
`[HOST:]CONTAINER[/PROTOCOL]` with `HOST` `[IP:](port | range)`).  A key that shapes
networking but is not modelled is a warning naming it; a key the Specification does not
have is an error; the others (image, environment, volumes, ...) are accepted and play no
part.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from topology.composeparts import (
    PortSpec,
    Source,
    address,
    expose,
    keys,
    mapping,
    ports,
)
from topology.fields import describe
from topology.model import Loc, Protocol
from topology.yamlsource import PathPart

# Compose Specification service keys that play no part in networking (accepted).
PASSIVE_SERVICE_KEYS = frozenset(
    [
        "annotations",
        "attach",
        "blkio_config",
        "build",
        "cgroup",
        "cgroup_parent",
        "command",
        "configs",
        "cpu_count",
        "cpu_percent",
        "cpu_period",
        "cpu_quota",
        "cpu_rt_period",
        "cpu_rt_runtime",
        "cpu_shares",
        "cpus",
        "cpuset",
        "credential_spec",
        "depends_on",
        "develop",
        "device_cgroup_rules",
        "devices",
        "entrypoint",
        "env_file",
        "environment",
        "extends",
        "gpus",
        "group_add",
        "healthcheck",
        "image",
        "init",
        "ipc",
        "isolation",
        "labels",
        "label_file",
        "logging",
        "mem_limit",
        "mem_reservation",
        "mem_swappiness",
        "memswap_limit",
        "models",
        "oom_kill_disable",
        "oom_score_adj",
        "pid",
        "pids_limit",
        "platform",
        "post_start",
        "pre_stop",
        "privileged",
        "profiles",
        "provider",
        "pull_policy",
        "read_only",
        "restart",
        "runtime",
        "secrets",
        "security_opt",
        "shm_size",
        "stdin_open",
        "stop_grace_period",
        "stop_signal",
        "storage_opt",
        "tmpfs",
        "tty",
        "ulimits",
        "use_api_socket",
        "user",
        "userns_mode",
        "uts",
        "volumes",
        "volumes_from",
        "working_dir",
    ]
)
# Keys that shape networking and are modelled.
MODELLED_SERVICE_KEYS = frozenset(
    [
        "container_name",
        "deploy",
        "expose",
        "hostname",
        "network_mode",
        "networks",
        "ports",
        "scale",
    ]
)
# Keys that shape networking but are not modelled: a warning names them.
UNMODELLED_SERVICE_KEYS = frozenset(
    [
        "cap_add",
        "cap_drop",
        "dns",
        "dns_opt",
        "dns_search",
        "domainname",
        "external_links",
        "extra_hosts",
        "links",
        "mac_address",
        "sysctls",
    ]
)
_NETWORK_KEYS = frozenset(
    [
        "driver",
        "driver_opts",
        "attachable",
        "enable_ipv4",
        "enable_ipv6",
        "external",
        "ipam",
        "internal",
        "labels",
        "name",
    ]
)
_UNMODELLED_NETWORK_KEYS = frozenset(["driver_opts", "enable_ipv6"])
_PROJECT_KEYS = frozenset(["node", "project", "file", "services", "networks"])
_FILE_KEYS = frozenset(
    ["name", "version", "services", "networks", "volumes", "configs", "secrets"]
)
_UNMODELLED_ATTACH_KEYS = frozenset(
    [
        "ipv6_address",
        "link_local_ips",
        "mac_address",
        "driver_opts",
        "priority",
        "gw_priority",
        "interface_name",
    ]
)
_ATTACH_KEYS = _UNMODELLED_ATTACH_KEYS | {"aliases", "ipv4_address"}
NETWORK_MODES = "bridge, host, none, service:NAME, container:NAME"
# A Compose project name: lowercase letters, digits, dashes and underscores, starting
# with a letter or digit (compose-go `loader.NormalizeProjectName` / spec.md "name").
_PROJECT = re.compile(r"[a-z0-9][a-z0-9_-]*\Z")
# Service and network keys (spec.md: `[a-zA-Z0-9._-]+`).
_KEY = re.compile(r"[a-zA-Z0-9._-]+\Z")
# A container name as the Engine accepts it (`[a-zA-Z0-9][a-zA-Z0-9_.-]+`).
_CONTAINER = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+\Z")


@dataclass(frozen=True, slots=True)
class Attachment:
    """A service's attachment to one network (`networks` list item or map entry)."""

    network: str  # the key in the project's top-level `networks` (or `default`)
    ipv4_address: IPv4Address | None = None
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ComposeService:
    """One service; `network_mode` None is the Compose default (its `networks`, or the
    project's `default`); `service:X`/`container:X` are kept as written."""

    name: str
    network_mode: str | None
    networks: tuple[Attachment, ...]
    ports: tuple[PortSpec, ...]
    expose: tuple[tuple[int, Protocol], ...]
    hostname: str | None
    container_name: str | None
    replicas: int
    loc: Loc


@dataclass(frozen=True, slots=True)
class ComposeNetwork:
    """A top-level network of a project; `name` is Docker's (`<project>_<key>`, the
    `name:` given, or the external network's)."""

    key: str
    name: str
    external: bool
    internal: bool
    subnet: IPv4Network | None
    gateway: IPv4Address | None
    loc: Loc


@dataclass(frozen=True, slots=True)
class ComposeProject:
    """A Compose project on one Docker host (`compose` list item)."""

    node: str
    project: str
    services: tuple[ComposeService, ...]
    networks: tuple[ComposeNetwork, ...]
    loc: Loc


def parse_project(
    node: str, project: str, data: Mapping[str, Any], src: Source, loc: Loc
) -> ComposeProject:
    """A project from its Compose mapping (`services`, `networks`, ...)."""
    obj = f"compose project {project}"
    keys(src, obj, (), data, _FILE_KEYS | {k for k in data if k.startswith("x-")})
    name = data.get("name")
    if name is not None and name != project:
        raise src.fail(
            obj,
            ("name",),
            f"name {describe(name)} differs from the project {project!r}",
        )
    services_raw = mapping(src, obj, ("services",), data.get("services"))
    if not services_raw:
        raise src.fail(obj, ("services",), "a project needs at least one service")
    networks_raw = mapping(src, obj, ("networks",), data.get("networks"))
    networks = tuple(
        _network(src, project, key, value) for key, value in networks_raw.items()
    )
    services = tuple(
        _service(src, project, key, value) for key, value in services_raw.items()
    )
    known = {n.key for n in networks} | {"default"}
    for s in services:
        for i, att in enumerate(s.networks):
            if att.network not in known:
                raise src.fail(
                    f"service {project}/{s.name}", ("services", s.name, "networks", i),
                    f"network {att.network!r} is not declared in the top-level networks"
                    f" (declared: {', '.join(sorted(known))})",
                )  # fmt: skip
    return ComposeProject(node, project, services, networks, loc)


def check_project_name(project: Any) -> str | None:
    """Why `project` is not a Compose project name (None: it is)."""
    if not isinstance(project, str) or not _PROJECT.match(project):
        return (
            f"{describe(project)} is not a project name (allowed: lowercase letters,"
            " digits, '-' and '_', starting with a letter or digit)"
        )
    return None


def _network(src: Source, project: str, key: Any, value: Any) -> ComposeNetwork:
    parts: tuple[PathPart, ...] = ("networks", key)
    obj = f"network {project}/{key}"
    if not isinstance(key, str) or not _KEY.match(key):
        raise src.fail(obj, parts, f"{describe(key)} is not a network name")
    data = mapping(src, obj, parts, value)
    keys(src, obj, parts, data, _NETWORK_KEYS, _UNMODELLED_NETWORK_KEYS)
    driver = data.get("driver", "bridge")
    if driver != "bridge":
        raise src.fail(
            obj, (*parts, "driver"),
            f"driver {describe(driver)} is not modelled (allowed: bridge)",
        )  # fmt: skip
    external = _bool(src, obj, (*parts, "external"), data.get("external", False))
    internal = _bool(src, obj, (*parts, "internal"), data.get("internal", False))
    name = data.get("name")
    if name is not None and (not isinstance(name, str) or not _KEY.match(name)):
        raise src.fail(obj, (*parts, "name"), f"{describe(name)} is not a network name")
    subnet, gateway = _ipam(src, obj, (*parts, "ipam"), data.get("ipam"))
    if external and (subnet is not None or internal):
        raise src.fail(
            obj, (*parts, "external"),
            "an external network is created outside the project: it takes no ipam or"
            " internal",
        )  # fmt: skip
    # compose-go: an external network keeps its own name; others are `<project>_<key>`.
    docker_name = name or (key if external else f"{project}_{key}")
    return ComposeNetwork(
        key, docker_name, external, internal, subnet, gateway, src.loc(parts)
    )


def _bool(src: Source, obj: str, parts: tuple[PathPart, ...], value: Any) -> bool:
    if not isinstance(value, bool):
        raise src.fail(obj, parts, f"expected true or false, got {describe(value)}")
    return value


def _ipam(
    src: Source, obj: str, parts: tuple[PathPart, ...], value: Any
) -> tuple[IPv4Network | None, IPv4Address | None]:
    data = mapping(src, obj, parts, value)
    keys(src, obj, parts, data, frozenset({"driver", "config", "options"}))
    if data.get("driver", "default") != "default":
        raise src.fail(
            obj, (*parts, "driver"), "only the default IPAM driver is modelled"
        )
    config = data.get("config") or []
    if not isinstance(config, list):
        raise src.fail(
            obj, (*parts, "config"), f"expected a list, got {describe(config)}"
        )
    if len(config) > 1:
        raise src.fail(
            obj, (*parts, "config", 1), "one ipam.config entry is modelled (IPv4 only)"
        )
    if not config:
        return None, None
    at = (*parts, "config", 0)
    entry = mapping(src, obj, at, config[0])
    keys(
        src, obj, at, entry, frozenset({"subnet", "gateway"}),
        frozenset({"ip_range", "aux_addresses"}),
    )  # fmt: skip
    raw = entry.get("subnet")
    if raw is None:
        raise src.fail(obj, at, "missing subnet")
    try:
        subnet = IPv4Network(str(raw), strict=True)
    except ValueError:
        raise src.fail(
            obj, (*at, "subnet"), f"{describe(raw)} is not an IPv4 network (a.b.c.d/n)"
        ) from None
    if subnet.prefixlen > 30:
        raise src.fail(
            obj, (*at, "subnet"), f"{subnet} is too small (allowed: /30 or larger)"
        )
    gw_raw = entry.get("gateway")
    if gw_raw is None:
        return subnet, None
    gateway = address(src, obj, (*at, "gateway"), gw_raw)
    if gateway not in subnet or gateway in (
        subnet.network_address,
        subnet.broadcast_address,
    ):
        raise src.fail(obj, (*at, "gateway"), f"{gateway} is not a host of {subnet}")
    return subnet, gateway


def _service(src: Source, project: str, key: Any, value: Any) -> ComposeService:
    parts: tuple[PathPart, ...] = ("services", key)
    obj = f"service {project}/{key}"
    if not isinstance(key, str) or not _KEY.match(key):
        raise src.fail(obj, parts, f"{describe(key)} is not a service name")
    data = mapping(src, obj, parts, value)
    keys(
        src, obj, parts, data, PASSIVE_SERVICE_KEYS | MODELLED_SERVICE_KEYS,
        UNMODELLED_SERVICE_KEYS,
    )  # fmt: skip
    mode = data.get("network_mode")
    if mode is not None:
        ok = isinstance(mode, str) and (
            mode in ("bridge", "host", "none")
            or (mode.startswith(("service:", "container:")) and mode.split(":", 1)[1])
        )
        if not ok:
            raise src.fail(
                obj, (*parts, "network_mode"),
                f"{describe(mode)} is not a network mode (allowed: {NETWORK_MODES})",
            )  # fmt: skip
        if "networks" in data:
            raise src.fail(
                obj, (*parts, "networks"),
                "networks and network_mode are mutually exclusive (Compose Specification)",
            )  # fmt: skip
    networks = _attachments(src, obj, (*parts, "networks"), data.get("networks"))
    published = ports(src, obj, (*parts, "ports"), data.get("ports"))
    exposed = expose(src, obj, (*parts, "expose"), data.get("expose"))
    if mode is not None and mode.startswith(("service:", "container:")):
        # moby runconfig validateNetContainerMode (hostconfig_unix.go): a container in
        # another's namespace has no ports of its own: ErrConflictNetworkPublishPorts,
        # ErrConflictNetworkExposePorts; its ports are the namespace owner's to declare
        for field, given, what in (("ports", published, "publishing"),
                                   ("expose", exposed, "exposing")):  # fmt: skip
            if given:
                raise src.fail(
                    obj, (*parts, field),
                    f"conflicting options: port {what} and the container type network"
                    f" mode (Docker Engine refuses {field} with network_mode {mode}: the"
                    f" namespace is {mode.split(':', 1)[1]}'s, declare the port there)",
                )  # fmt: skip
    if published and mode is not None and mode != "bridge":
        raise src.fail(
            obj, (*parts, "ports"),
            f"ports cannot be published with network_mode {mode} (Docker publishes ports"
            " of a container with its own bridge network only)",
        )  # fmt: skip
    hostname = _name(src, obj, (*parts, "hostname"), data.get("hostname"), _KEY)
    container_name = _name(
        src, obj, (*parts, "container_name"), data.get("container_name"), _CONTAINER
    )
    replicas = _replicas(src, obj, parts, data)
    if container_name is not None and replicas != 1:
        raise src.fail(
            obj, (*parts, "container_name"),
            f"container_name names one container, but the service has {replicas}"
            " replicas (Compose refuses to scale a service with a container_name)",
        )  # fmt: skip
    return ComposeService(
        key, mode, networks, published, exposed, hostname, container_name, replicas,
        src.loc(parts),
    )  # fmt: skip


def _name(
    src: Source,
    obj: str,
    parts: tuple[PathPart, ...],
    value: Any,
    pattern: re.Pattern[str],
) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not pattern.match(value):
        raise src.fail(obj, parts, f"{describe(value)} is not a valid name")
    return value


def _replicas(
    src: Source, obj: str, parts: tuple[PathPart, ...], data: Mapping[str, Any]
) -> int:
    deploy = mapping(src, obj, (*parts, "deploy"), data.get("deploy"))
    found: list[tuple[tuple[PathPart, ...], Any]] = []
    if "scale" in data:
        found.append(((*parts, "scale"), data["scale"]))
    if "replicas" in deploy:
        found.append(((*parts, "deploy", "replicas"), deploy["replicas"]))
    for key in deploy:
        if key != "replicas":
            src.warn(
                obj, (*parts, "deploy", key), f"deploy.{key} is not modelled (ignored)"
            )
    for at, value in found:
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not 0 <= value <= 100
        ):
            raise src.fail(
                obj, at, f"{describe(value)} is not a replica count (allowed: 0-100)"
            )
    if len(found) == 2 and found[0][1] != found[1][1]:
        raise src.fail(
            obj, found[0][0],
            f"scale {found[0][1]} and deploy.replicas {found[1][1]} differ",
        )  # fmt: skip
    return found[0][1] if found else 1


def _attachments(
    src: Source, obj: str, parts: tuple[PathPart, ...], value: Any
) -> tuple[Attachment, ...]:
    if value is None:
        return ()
    if isinstance(value, list):
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise src.fail(
                    obj, (*parts, i), f"expected a network name, got {describe(item)}"
                )
            out.append(Attachment(item))
        return tuple(out)
    data = mapping(src, obj, parts, value)
    result = []
    for key, entry in data.items():
        at = (*parts, key)
        options = mapping(src, obj, at, entry)
        keys(src, obj, at, options, _ATTACH_KEYS, _UNMODELLED_ATTACH_KEYS)
        ip = options.get("ipv4_address")
        aliases = options.get("aliases", [])
        if not isinstance(aliases, list) or not all(
            isinstance(a, str) and _KEY.match(a) for a in aliases
        ):
            raise src.fail(obj, (*at, "aliases"), "expected a list of names")
        result.append(
            Attachment(
                key,
                None if ip is None else address(src, obj, (*at, "ipv4_address"), ip),
                tuple(aliases),
            )
        )
    return tuple(result)


__all__ = [
    "Attachment",
    "ComposeNetwork",
    "ComposeProject",
    "ComposeService",
    "PortSpec",
    "Source",
    "check_project_name",
    "parse_project",
]
