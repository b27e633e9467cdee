"""`dataplane diff A B`: the allowed connections of two versions of a cluster, compared.

Both clusters' connection lists (`dataplane.connlist`, workloads merged) are keyed by
(source, destination); a key only in B is an added connection, only in A a removed one,
in both with other ports a changed one.  Workloads present in one version only are listed
too, and those in both whose pods differ in what policies look at (their number, labels,
namespace labels, served ports).  With `explain`, each difference names the policy changes behind it: the policies
(added, removed or edited between A and B) that select its destination (for ingress) or
its source (for egress) in either version, and for each version the rules that admit the
connection (their peers matched by the decision code's own test,
`PolicyIndex.peer_miss`) with the ports they admit; and the admin policies (added,
removed or edited) whose subject holds either end, with their tier and priority and the
rules that match in each version, with action and ports (`PolicyIndex.admin_peer_miss`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from dataplane.connlist import connections, format_ports, rule_ports, workload_name
from dataplane.netpol_index import Party, index_of
from dataplane.netpol_ports import Ports
from topology.model import (
    AdminPolicy,
    AdminRule,
    Cluster,
    NetworkPolicy,
    Pod,
    PolicyRule,
)
from topology.nogc import no_gc
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


def _parties(cluster: Cluster, other: str) -> list[Party]:
    """The parties of workload (or connlist address range) `other` in `cluster`: its
    pods, or a range's first address, which stands for it (connlist's ranges)."""
    index = index_of(cluster)
    pods = _pods(cluster, other)
    if pods:
        return [index.party(str(p.ip)) for p in pods]
    return [index.party(other.split("-", 1)[0])]


def _matching(
    cluster: Cluster,
    rules: Sequence[PolicyRule | AdminRule],
    peer_matches: Callable[[Any, Party], bool],
    direction: str,
    src: str,
    dst: str,
) -> list[tuple[int, Ports]]:
    """The rules (index, ports) whose peers match the other end of `src` -> `dst` (no
    peers: every peer) and whose ports admit some port of the destination."""
    other = src if direction == "ingress" else dst
    parties = _parties(cluster, other)
    targets = _pods(cluster, dst)
    target = targets[0] if targets else None
    found = []
    for ri, rule in enumerate(rules):
        if rule.peers and not any(
            peer_matches(peer, party) for peer in rule.peers for party in parties
        ):
            continue
        ports = rule_ports(rule, target)
        if ports:
            found.append((ri, ports))
    return found


def _admitting(
    cluster: Cluster, pol: NetworkPolicy, direction: str, src: str, dst: str
) -> str:
    """Which rules of `pol` (for `direction`) admit `src` -> `dst`, with their ports:
    `ingress rule 0 admits TCP 80`, or `no ingress rule admits it`."""
    index = index_of(cluster)

    def hit(peer: Any, party: Party) -> bool:
        return index.peer_miss(pol.namespace, peer, party) is None

    rules = pol.ingress if direction == "ingress" else pol.egress
    found = [
        f"{direction} rule {ri} admits {format_ports(ports)}"
        for ri, ports in _matching(cluster, rules, hit, direction, src, dst)
    ]
    return ", ".join(found) or f"no {direction} rule admits it"


def _admin_matching(
    cluster: Cluster, pol: AdminPolicy, direction: str, src: str, dst: str
) -> str:
    """Which rules of admin policy `pol` match `src` -> `dst`, in order, with their
    action and ports: `ingress rule 0 'no-dev' (Deny) matches All Connections`."""
    index = index_of(cluster)

    def hit(peer: Any, party: Party) -> bool:
        return index.admin_peer_miss(peer, party) is None

    rules = pol.ingress if direction == "ingress" else pol.egress
    found = []
    for ri, ports in _matching(cluster, rules, hit, direction, src, dst):
        rule = rules[ri]
        name = f" {rule.name!r}" if rule.name else ""
        found.append(
            f"{direction} rule {ri}{name} ({rule.action.value}) matches "
            f"{format_ports(ports)}"
        )
    return ", ".join(found) or f"no {direction} rule matches it"


T = TypeVar("T")
PolicyChange = tuple[str, NetworkPolicy | None, NetworkPolicy | None]
AdminChange = tuple[str, AdminPolicy | None, AdminPolicy | None]


def _changes(
    old: Mapping[str, T], new: Mapping[str, T], spec: Callable[[T], tuple[object, ...]]
) -> list[tuple[str, T | None, T | None]]:
    """The objects added, removed or changed (in what `spec` returns), by key."""
    out: list[tuple[str, T | None, T | None]] = []
    for key in sorted(set(old) | set(new)):
        pa, pb = old.get(key), new.get(key)
        if pa is None:
            out.append(("added", pa, pb))
        elif pb is None:
            out.append(("removed", pa, pb))
        elif spec(pa) != spec(pb):
            out.append(("changed", pa, pb))
    return out


def _policy_changes(a: Cluster, b: Cluster) -> list[PolicyChange]:
    return _changes(a.policies, b.policies, _spec)


def _admin_changes(a: Cluster, b: Cluster) -> list[AdminChange]:
    """The admin policies added, removed or changed (tier, priority, subject, rules)."""
    return _changes(a.admin_policies, b.admin_policies, _admin_spec)


def _spec(pol: NetworkPolicy) -> tuple[object, ...]:
    return (pol.pod_selector, pol.policy_types, pol.ingress, pol.egress)


def _admin_spec(pol: AdminPolicy) -> tuple[object, ...]:
    return (pol.tier, pol.priority, pol.subject, pol.ingress, pol.egress)


def _admin_why(
    changes: list[AdminChange], a: Cluster, b: Cluster, src: str, dst: str
) -> list[str]:
    """Each admin policy change behind a difference: the policy with its tier and
    priority in each version, and for each side its subject holds (ingress of the
    destination, egress of the source), which of its rules matched before and match
    after (the first one decides, or passes, for its tier)."""
    out = []
    for kind, pa, pb in changes:
        sides = []
        for direction, who in (("ingress", dst), ("egress", src)):
            parts = []
            for word, cluster, version in (("before", a, pa), ("after", b, pb)):
                if version is None:
                    continue
                index = index_of(cluster)
                held = any(
                    index.admin_peer_miss(version.subject, party) is None
                    for party in _parties(cluster, who)
                )
                if held:
                    text = _admin_matching(cluster, version, direction, src, dst)
                else:
                    text = f"its subject does not hold {who}"
                parts.append(
                    (word, f"{version.short} {version.tier.value} tier: " + text, held)
                )
            if not any(held for _, _, held in parts):
                continue
            sides.append(
                f"{direction} of {who}: "
                + "; ".join(f"{word}, {text}" for word, text, _ in parts)
            )
        if sides:
            pol = pb or pa
            assert pol is not None
            out.append(f"{pol.kind.lower()} {pol.name} {kind} ({'; '.join(sides)})")
    return out


def _why(
    changes: list[PolicyChange], admin_changes: list[AdminChange],
    moved: dict[str, tuple[str, ...]], a: Cluster, b: Cluster, src: str, dst: str,
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
    out += _admin_why(admin_changes, a, b, src, dst)
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
    with no_gc():  # hundreds of thousands of tuples and changes, none in a cycle
        return _conndiff(a, b, explain)


def _conndiff(a: Cluster, b: Cluster, explain: bool) -> Diff:
    from dataplane.sim import Simulator

    before = connections(Simulator(a))
    after = connections(Simulator(b))
    policy_changes = _policy_changes(a, b) if explain else []
    admin_changes = _admin_changes(a, b) if explain else []
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
        why = _why(policy_changes, admin_changes, moved, a, b, *key) if explain else ()
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
