"""`dataplane diff A B`: the allowed connections of two versions of a cluster, compared.

Both clusters' connection lists (`dataplane.connlist`, workloads merged) are keyed by
(source, destination); a key only in B is an added connection, only in A a removed one,
in both with other ports a changed one.  Workloads present in one version only are listed
too.  With `explain`, each difference names the policy changes behind it: the policies
(added, removed or edited between A and B) that select its destination (for ingress) or
its source (for egress) in either version.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

from dataplane.connlist import connections, format_ports, workload_name
from dataplane.netpol_ports import Ports
from topology.model import Cluster, NetworkPolicy
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

    @property
    def differs(self) -> bool:
        return bool(self.changes or self.workloads_added or self.workloads_removed)


def _workloads(cluster: Cluster) -> set[str]:
    return {
        workload_name(p, "workload")
        for p in cluster.pods.values()
        if not p.host_network
    }


def _selects(pol: NetworkPolicy, cluster: Cluster, name: str) -> bool:
    """Whether `pol` selects a pod of workload `name` in `cluster`."""
    return any(
        workload_name(p, "workload") == name
        and p.namespace == pol.namespace
        and matches(pol.pod_selector, p.labels)
        for p in cluster.pods.values()
        if not p.host_network
    )


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
    changes: list[PolicyChange],
    a: Cluster, b: Cluster, src: str, dst: str,
) -> tuple[str, ...]:  # fmt: skip
    out = []
    for kind, pa, pb in changes:
        pol = pb or pa
        assert pol is not None
        sides = []
        for cluster, version in ((a, pa), (b, pb)):
            if version is None:
                continue
            if "Ingress" in version.policy_types and _selects(version, cluster, dst):
                sides.append(f"ingress of {dst}")
            if "Egress" in version.policy_types and _selects(version, cluster, src):
                sides.append(f"egress of {src}")
        if sides:
            out.append(
                f"networkpolicy {pol.key} {kind} ({', '.join(dict.fromkeys(sides))})"
            )
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
    for key in sorted(set(before) | set(after)):
        ca, cb = before.get(key, ()), after.get(key, ())
        if ca == cb:
            continue
        kind = "added" if not ca else "removed" if not cb else "changed"
        why = _why(policy_changes, a, b, *key) if explain else ()
        d.changes.append(Change(kind, key[0], key[1], ca, cb, why))
    wa, wb = _workloads(a), _workloads(b)
    d.workloads_added = sorted(wb - wa)
    d.workloads_removed = sorted(wa - wb)
    return d


def render(d: Diff, output: str, a: str, b: str) -> str:
    if output in ("json", "yaml"):
        from dataplane import output as out_fmt

        doc = out_fmt.document(
            "diff", before=a, after=b, differs=d.differs,
            changes=[c.to_dict() for c in d.changes],
            workloadsAdded=d.workloads_added, workloadsRemoved=d.workloads_removed,
        )  # fmt: skip
        return out_fmt.dump(doc, output)
    if output == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["change", "src", "dst", "before", "after", "why"])
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
