"""`dataplane diff A B`: the allowed connections of two versions of a cluster, compared.

Both clusters' connection lists (`dataplane.connlist`, workloads merged) are keyed by
(source, destination); a key only in B is an added connection, only in A a removed one,
in both with other ports a changed one.  Workloads present in one version only are listed
too, and those in both whose pods differ in what policies look at (their number, labels,
namespace labels, served ports).  With `explain`, each difference names the policy changes behind it: the policies
(added, removed or edited between A and B) that select its destination (for ingress) or
its source (for egress) in either version, and for each version the rules that admit the
connection (their peers matched by the decision code's own test,
`PolicyIndex.peer_miss`) with the ports they admit.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

from dataplane.connlist import connections, format_ports, rule_ports, workload_name
from dataplane.netpol_index import index_of
from dataplane.netpol_ports import Ports
from topology.model import Cluster, NetworkPolicy, Pod
from topology.selectors import matches


@dataclass(frozen=True, slots=True)
class Change:
    kind: str  # added, removed, changed
    src: str
    dst: str
    before: Ports
    after: Ports
    why: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "change": self.kind,
            "src": self.src,
            "dst": self.dst,
            "before": format_ports(self.before) if self.before else None,
            "after": format_ports(self.after) if self.after else None,
        }
        if self.why:
            d["why"] = list(self.why)
        return d


@dataclass(slots=True)
class Diff:
    changes: list[Change] = field(default_factory=list)
    workloads_added: list[str] = field(default_factory=list)
    workloads_removed: list[str] = field(default_factory=list)
    # workloads in both versions whose pods differ in what policies look at
    workloads_changed: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)

    @property
    def differs(self) -> bool:
        return bool(
            self.changes
            or self.workloads_added
            or self.workloads_removed
            or self.workloads_changed
        )


def _workloads(cluster: Cluster) -> dict[str, dict[str, str]]:
    """Each workload (pods not hostNetwork, replicas merged) with what policies look at:
    how many pods, their labels, their namespace's labels, the ports they serve."""
    pods: dict[str, list[Pod]] = {}
    for p in cluster.pods.values():
        if not p.host_network:
            pods.setdefault(workload_name(p, "workload"), []).append(p)

    def words(items: set[str]) -> str:
        return ",".join(sorted(items)) or "none"

    out = {}
    for name, group in pods.items():
        ns = cluster.namespaces.get(group[0].namespace)
        out[name] = {
            "replicas": str(len(group)),
            "labels": words({f"{k}={v}" for p in group for k, v in p.labels.items()}),
            "namespace labels": words(
                {f"{k}={v}" for k, v in (ns.labels if ns else {}).items()}
            ),
            "ports": words(
                {
                    f"{cp.port}/{cp.protocol.value}"
                    + (f" ({cp.name})" if cp.name else "")
                    for p in group
                    for cp in p.ports()
                }
            ),
        }
    return out


def _pods(cluster: Cluster, name: str) -> list[Pod]:
    """The pods (not hostNetwork) of workload `name` in `cluster`."""
    return [
        p
        for p in cluster.pods.values()
        if not p.host_network and workload_name(p, "workload") == name
    ]


def _admitting(
    cluster: Cluster, pol: NetworkPolicy, direction: str, src: str, dst: str
) -> str:
    """Which rules of `pol` (for `direction`) admit `src` -> `dst`, with their ports:
    `ingress rule 0 admits TCP 80`, or `no ingress rule admits it`."""
    index = index_of(cluster)
    ingress = direction == "ingress"
    other = src if ingress else dst
    pods = _pods(cluster, other)
    if pods:
        parties = [index.party(str(p.ip)) for p in pods]
    else:  # an address range: its first address stands for it (connlist's ranges)
        parties = [index.party(other.split("-", 1)[0])]
    targets = _pods(cluster, dst)
    target = targets[0] if targets else None
    found = []
    for ri, rule in enumerate(pol.ingress if ingress else pol.egress):
        if rule.peers and not any(
            index.peer_miss(pol.namespace, peer, party) is None
            for peer in rule.peers
            for party in parties
        ):
            continue
        ports = rule_ports(rule, target)
        if ports:
            found.append(f"{direction} rule {ri} admits {format_ports(ports)}")
    return ", ".join(found) or f"no {direction} rule admits it"


PolicyChange = tuple[str, NetworkPolicy | None, NetworkPolicy | None]


def _policy_changes(a: Cluster, b: Cluster) -> list[PolicyChange]:
    out: list[PolicyChange] = []
    for key in sorted(set(a.policies) | set(b.policies)):
        pa, pb = a.policies.get(key), b.policies.get(key)
        if pa is None:
            out.append(("added", pa, pb))
        elif pb is None:
            out.append(("removed", pa, pb))
        elif _spec(pa) != _spec(pb):
            out.append(("changed", pa, pb))
    return out


def _spec(pol: NetworkPolicy) -> tuple[object, ...]:
    return (pol.pod_selector, pol.policy_types, pol.ingress, pol.egress)


def _why(
    changes: list[PolicyChange], moved: dict[str, tuple[str, ...]],
    a: Cluster, b: Cluster, src: str, dst: str,
) -> tuple[str, ...]:  # fmt: skip
    """Each policy change behind a difference: the policy, and for each side it selects
    (ingress of the destination, egress of the source), what its rules admitted before
    and admit after."""
    out = []
    for kind, pa, pb in changes:
        pol = pb or pa
        assert pol is not None
        sides = []
        for direction, policy_type, who in (
            ("ingress", "Ingress", dst), ("egress", "Egress", src),
        ):  # fmt: skip
            parts = []
            for word, cluster, version in (("before", a, pa), ("after", b, pb)):
                if version is None:
                    continue
                if policy_type in version.policy_types and any(
                    p.namespace == version.namespace
                    and matches(version.pod_selector, p.labels)
                    for p in _pods(cluster, who)
                ):
                    text = _admitting(cluster, version, direction, src, dst)
                else:
                    text = f"it does not select {who} for {direction}"
                parts.append((word, text, text.startswith("it does not")))
            if all(missing for _, _, missing in parts):
                continue
            sides.append(
                f"{direction} of {who}: "
                + "; ".join(f"{word}, {text}" for word, text, _ in parts)
            )
        if sides:
            out.append(f"networkpolicy {pol.key} {kind} ({'; '.join(sides)})")
    # what a policy looks at on each end: labels (and a destination's ports)
    for name, facts in ((src, ("labels", "namespace labels")),
                        (dst, ("labels", "namespace labels", "ports"))):  # fmt: skip
        what = [w for w in moved.get(name, ()) if w.startswith(facts)]
        if what:
            out.append(f"workload {name} changed ({'; '.join(what)})")
    out = list(dict.fromkeys(out))  # a workload's traffic among its own replicas
    if not out:
        out.append(
            "no policy change selects these pods: the workloads or their labels changed"
        )
    return tuple(out)


def conndiff(a: Cluster, b: Cluster, explain: bool = False) -> Diff:
    """The difference between the connections of cluster `a` and of cluster `b`."""
    from dataplane.sim import Simulator

    before = connections(Simulator(a))
    after = connections(Simulator(b))
    policy_changes = _policy_changes(a, b) if explain else []
    d = Diff()
    wa, wb = _workloads(a), _workloads(b)
    d.workloads_added = sorted(wb.keys() - wa.keys())
    d.workloads_removed = sorted(wa.keys() - wb.keys())
    for name in sorted(wa.keys() & wb.keys()):
        what = tuple(
            f"{fact} {wa[name][fact]} -> {wb[name][fact]}"
            for fact in wa[name]
            if wa[name][fact] != wb[name][fact]
        )
        if what:
            d.workloads_changed.append((name, what))
    moved = dict(d.workloads_changed)
    for key in sorted(set(before) | set(after)):
        ca, cb = before.get(key, ()), after.get(key, ())
        if ca == cb:
            continue
        kind = "added" if not ca else "removed" if not cb else "changed"
        why = _why(policy_changes, moved, a, b, *key) if explain else ()
        d.changes.append(Change(kind, key[0], key[1], ca, cb, why))
    return d


def render(d: Diff, output: str, a: str, b: str) -> str:
    if output in ("json", "yaml"):
        from dataplane import output as out_fmt

        doc = out_fmt.document(
            "diff", before=a, after=b, differs=d.differs,
            changes=[c.to_dict() for c in d.changes],
            workloadsAdded=d.workloads_added, workloadsRemoved=d.workloads_removed,
            workloadsChanged=[{"workload": name, "changes": list(what)}
                              for name, what in d.workloads_changed],
        )  # fmt: skip
        return out_fmt.dump(doc, output)
    if output == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["change", "src", "dst", "before", "after", "why"])
        # the workloads first, as in the text: their name in `src`, what changed in `why`
        w.writerows(["workload added", n, "", "", "", ""] for n in d.workloads_added)
        w.writerows(
            ["workload removed", n, "", "", "", ""] for n in d.workloads_removed
        )
        w.writerows(
            ["workload changed", n, "", "", "", "; ".join(what)]
            for n, what in d.workloads_changed
        )
        for c in d.changes:
            w.writerow([c.kind, c.src, c.dst, format_ports(c.before) if c.before else "",
                        format_ports(c.after) if c.after else "", "; ".join(c.why)])  # fmt: skip
        return buf.getvalue()
    if output == "md":
        if not d.differs:
            return f"**No change in allowed connections** between `{a}` and `{b}`.\n"
        n = {
            k: sum(1 for c in d.changes if c.kind == k)
            for k in ("added", "removed", "changed")
        }
        lines = [
            f"### Allowed connections: `{a}` -> `{b}`",
            "",
            f"{n['added']} added, {n['removed']} removed, {n['changed']} changed"
            + (
                f"; workloads added: {', '.join(d.workloads_added)}"
                if d.workloads_added
                else ""
            )
            + (
                f"; workloads removed: {', '.join(d.workloads_removed)}"
                if d.workloads_removed
                else ""
            )
            + "".join(
                f"; workload changed: {name} ({'; '.join(what)})"
                for name, what in d.workloads_changed
            ),
            "",
            "| change | source | destination | before | after |"
            + (" why |" if any(c.why for c in d.changes) else ""),
            "|---|---|---|---|---|" + ("---|" if any(c.why for c in d.changes) else ""),
        ]
        for c in d.changes:
            row = (f"| {c.kind} | `{c.src}` | `{c.dst}` | {format_ports(c.before) if c.before else '-'} "
                   f"| {format_ports(c.after) if c.after else '-'} |")  # fmt: skip
            if c.why:
                row += f" {'; '.join(c.why)} |"
            lines.append(row)
        return "\n".join(lines) + "\n"
    out: list[str] = []
    out += [f"workload added: {name}" for name in d.workloads_added]
    out += [f"workload removed: {name}" for name in d.workloads_removed]
    out += [
        f"workload changed: {name} ({'; '.join(what)})"
        for name, what in d.workloads_changed
    ]
    for c in d.changes:
        if c.kind == "added":
            line = f"+ {c.src} => {c.dst} : {format_ports(c.after)}"
        elif c.kind == "removed":
            line = f"- {c.src} => {c.dst} : {format_ports(c.before)}"
        else:
            line = f"~ {c.src} => {c.dst} : {format_ports(c.before)} -> {format_ports(c.after)}"
        out.append(line + "".join(f"\n    because {w}" for w in c.why))
    if not d.differs:
        out.append("no change in allowed connections")
    return "\n".join(out) + "\n"


__all__ = ["Change", "Diff", "conndiff", "render"]
