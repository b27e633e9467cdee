"""`dataplane init [--cni flannel|calico] [--network MODE] [-o FILE]`: a commented starter.

The `cluster` section is written from the schema itself: every key of
`topology.schema.ClusterModel` with its description as a comment and its default value
(as `topology.config.default_config()` fills it in), so the starter cannot drift from the
code.  A key the CNI does not use (`bridge` with calico, `calico` with flannel, `vxlanPort`
without VXLAN) is named in a comment without a value, so uncommenting every default still
loads.  The manifests and steps are a small working example that loads and passes in every
network mode of every modelled CNI.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Annotated, Any

import typer

from dataplane.cli import DebugOpt, err_console, input_errors, register
from topology.cni_modes import CNI_NETWORKS as MODES
from topology.cni_modes import MODELLED_CNIS, PLANNED_NETWORKS

# The modelled CNI profiles and the network modes each offers, its default first; the
# others the schema knows are planned (docs/model.md, "CNI profiles").
CNI_NETWORKS: dict[str, tuple[str, ...]] = {
    c.value: tuple(m.value for m in MODES[c] if (c, m) not in PLANNED_NETWORKS)
    for c in MODELLED_CNIS
}
PLANNED_CNIS = tuple(c.value for c in MODES if c not in MODELLED_CNIS)
WIDTH = 88

HEADER = """\
# A dataplane scenario: a cluster, the Kubernetes objects in it, and steps with
# expectations.  Run it:  dataplane run {file}
# The whole format: docs/scenario-format.md (editors: schemas/scenario.schema.json).
name: starter                      # required, free text
description: >-                    # optional, free text (default: empty)
  Two nodes ({network}), a web Deployment behind a Service, a client pod, and a
  NetworkPolicy applied half-way.

# cluster: optional, and so is every key in it.  The CNI is {cni}; `network` picks its
# mode.  The commented keys show their defaults: uncomment one to change it.
cluster:
"""

BODY = """
# manifests: Kubernetes objects present before step 1, as `kubectl apply` takes them
# (Namespace, Pod, Deployment, ReplicaSet, StatefulSet, DaemonSet, Service, NetworkPolicy),
# or {file: path.yaml} for every object of a file (relative to this one).  Default: none.
# metadata.namespace defaults to `default`; a workload's pods are NAME-0, NAME-1, ...;
# pods go to the node with the fewest pods (kube-system/coredns-0 comes first, on node-1).
manifests:
  - apiVersion: apps/v1
    kind: Deployment
    metadata: {name: web}
    spec:
      replicas: 2
      selector: {matchLabels: {app: web}}
      template:
        metadata: {labels: {app: web}}
        spec:
          containers:
            - name: httpd
              image: httpd          # accepted without effect: only ports shape the network
              ports: [{containerPort: 80, name: http}]   # each one is a listening socket
  - apiVersion: v1
    kind: Pod
    metadata: {name: client, labels: {app: client}}
    spec:
      containers: [{name: client, image: busybox}]
  - apiVersion: v1
    kind: Service
    metadata: {name: web}
    spec:
      selector: {app: web}
      ports: [{port: 80, targetPort: http}]

# steps: required, run in order.  Each has one of probe, send, matrix, apply, delete,
# label, replay, and an optional name.  A probe sends the real first packet (here a TCP
# SYN) and walks it, and the reply, hop by hop; `expect` is a verdict (delivered, denied,
# denied-egress, denied-ingress, refused, no-route, unreachable, nxdomain, ttl-exceeded,
# too-big, dropped) or a mapping {verdict, policy, via, endpoint}.
steps:
  - name: the client reaches a web pod by its address
    probe: {from: default/client, to: default/web-0, port: 80, expect: delivered}
  - name: by the Service's DNS name, through kube-dns and kube-proxy
    probe: {from: default/client, to: web, port: 80, expect: delivered}
  - name: nothing listens on 81
    probe: {from: default/client, to: default/web-1, port: 81, expect: refused}
  - name: from now on the web pods admit the client only
    apply:
      - apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: web-from-client}
        spec:
          podSelector: {matchLabels: {app: web}}
          ingress:
            # ${ip:ENDPOINT} is that endpoint's address when the step runs
            - from: [{ipBlock: {cidr: "${ip:default/client}/32"}}]
              ports: [{port: http}]
  - name: web-0 is no longer admitted to web-1
    probe:
      from: default/web-0
      to: default/web-1
      port: 80
      expect: {verdict: denied-ingress, policy: default/web-from-client}
  - name: the client still is
    probe:
      from: default/client
      to: default/web-1
      port: 80
      expect: {verdict: delivered, policy: default/web-from-client}
"""


def _comment(text: str, indent: str) -> list[str]:
    return textwrap.wrap(
        text, WIDTH, initial_indent=f"{indent}# ", subsequent_indent=f"{indent}# "
    )


def _defaults(cni: str, network: str) -> dict[str, Any]:
    """The value of every `cluster` key when the scenario leaves it out, as YAML data:
    the model's default, or what `cluster_config()` computes where that is None; None
    for a key the CNI does not use."""
    from topology.config import cluster_config
    from topology.model import Loc
    from topology.schema import CalicoModel, ClusterModel

    model = ClusterModel.model_validate({"cni": cni, "network": network})
    values: dict[str, Any] = ClusterModel().model_dump(mode="json", by_alias=True)
    c = cluster_config(model, lambda _parts: Loc("<built-in>"))
    calico = cni == "calico"
    own_ipam = cni != "flannel"  # Calico's blocks, Cilium's cluster-pool
    node_keys = ("name", "ip") if own_ipam else ("name", "ip", "podCIDR")
    computed = {
        "cni": cni,
        "gateway": str(c.gateway),
        "vxlanPort": c.vxlan_port if network == "vxlan" or not own_ipam else None,
        "bridge": None if own_ipam else c.bridge,
        "calico": CalicoModel().model_dump(mode="json", by_alias=True)
        if calico
        else None,
        "nodes": [
            {
                k: v
                for k, v in (
                    ("name", n.name),
                    ("ip", str(n.ip)),
                    ("podCIDR", str(n.pod_cidr)),
                )
                if k in node_keys
            }
            for n in c.nodes
        ],
    }
    return {
        k: computed.get(k, v) if k in computed or v is None else v
        for k, v in values.items()
    }


def _flow(value: Any) -> str:
    """One YAML value on one line (`10.0.1.0/24`, `true`, `{name: node-1, ...}`)."""
    import yaml

    text: str = yaml.safe_dump(
        value, default_flow_style=True, sort_keys=False, width=1000
    )
    return text.removesuffix("\n...\n").strip()


def _cluster_lines(network: str, cni: str) -> list[str]:
    from topology.schema import ClusterModel

    defaults = _defaults(cni, network)
    lines: list[str] = []
    for name, info in ClusterModel.model_fields.items():
        key = info.alias or name
        lines += _comment(info.description or "", "  ")
        value = defaults[key]
        if key == "network":
            lines.append(f"  network: {network}")
        elif key == "cni" and cni != "flannel":
            lines.append(f"  cni: {cni}")
        elif value is None:
            lines.append(f"  # {key}:  # not used by cni: {cni}")
        elif isinstance(value, list) and value:
            lines.append(f"  # {key}:")
            lines += [f"  #   - {_flow(item)}" for item in value]
        else:
            lines.append(f"  # {key}: {_flow(value)}")
    return lines


def starter_scenario(network: str, file: str = "FILE", cni: str = "flannel") -> str:
    """The text `dataplane init --cni CNI --network NETWORK` writes (`file`: shown in its
    header)."""
    shown = network if cni == "flannel" else f"{cni} {network}"
    header = HEADER.format(file=file, network=shown, cni=cni)
    return header + "\n".join(_cluster_lines(network, cni)) + "\n" + BODY


def check_profile(cni: str, network: str) -> None:
    """Refuse a CNI profile that is not modelled, or a network mode it does not have."""
    from topology.errors import TopologyError

    if cni not in CNI_NETWORKS:
        planned = (
            f"; the {' and '.join(PLANNED_CNIS)} profile"
            f"{'s are' if len(PLANNED_CNIS) > 1 else ' is'} planned"
            if PLANNED_CNIS
            else ""
        )
        raise TopologyError(
            f"--cni {cni!r} is not supported (allowed: {', '.join(CNI_NETWORKS)}"
            f"{planned})"
        )
    if network not in CNI_NETWORKS[cni]:
        raise TopologyError(
            f"--network {network!r} is not a {cni} mode"
            f" (allowed: {', '.join(CNI_NETWORKS[cni])})"
        )


@register
def init(
    cni: Annotated[
        str,
        typer.Option(
            "--cni",
            help="The CNI profile: flannel, calico or cilium.",
        ),
    ] = "flannel",
    network: Annotated[
        str | None,
        typer.Option(
            "--network",
            help="How pod traffic crosses nodes (cluster.network): "
            + "; ".join(f"{', '.join(m)} for {c}" for c, m in CNI_NETWORKS.items())
            + " (default: the first).",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write to this file instead of stdout."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite the -o file if it exists.")
    ] = False,
    debug: DebugOpt = False,
) -> None:
    """Write a commented starter scenario that runs green (stdout, or -o FILE)."""
    from topology.errors import TopologyError

    with input_errors(debug):
        if cni in CNI_NETWORKS and network is None:
            network = CNI_NETWORKS[cni][0]
        check_profile(cni, network or "")
        assert network is not None
        if output is not None and output.exists() and not force:
            raise TopologyError(
                f"{output}: the file exists (use --force to overwrite it)"
            )
        text = starter_scenario(network, str(output) if output else "FILE", cni)
        if output is None:
            sys.stdout.write(text)
            return
        output.write_text(text, encoding="utf-8")
    err_console.print(f"wrote {output}", markup=False, highlight=False)
