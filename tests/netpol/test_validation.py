"""NetworkPolicy validation as the API server does it (implemented in topology/): every
error names the file, the line, the policy and the field, and the CLI exits 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from topology.errors import TopologyError
from topology.loader import load_scenario

HEAD = """\
name: validation
cluster: {dns: false}
manifests:
  - apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {name: bad, namespace: default}
    spec:
      podSelector: {}
"""
TAIL = """\
steps:
  - probe: {from: node/node-1, to: node/node-2, protocol: ICMP}
"""

# (id, the rest of spec, line of the error, field, what the message says)
CASES = [
    ("unknown operator", """\
      ingress:
        - from:
            - podSelector:
                matchExpressions:
                  - key: app
                    operator: Equals
                    values: [a]
""", 14, "spec.ingress[0].from[0].podSelector.matchExpressions[0].operator",
     "'Equals' is not allowed (allowed: In, NotIn, Exists, DoesNotExist)"),
    ("values with Exists", """\
      ingress:
        - from:
            - namespaceSelector:
                matchExpressions:
                  - key: app
                    operator: Exists
                    values: [a]
""", 15, "spec.ingress[0].from[0].namespaceSelector.matchExpressions[0].values",
     "values must be empty for operator Exists"),
    ("In without values", """\
      egress:
        - to:
            - podSelector:
                matchExpressions:
                  - key: app
                    operator: In
""", 13, "spec.egress[0].to[0].podSelector.matchExpressions[0].values",
     "values must be non-empty for operator In"),
    ("invalid CIDR", """\
      egress:
        - to:
            - ipBlock:
                cidr: 10.0.0.0/33
""", 12, "spec.egress[0].to[0].ipBlock.cidr", "'10.0.0.0/33' is not a valid CIDR"),
    ("except outside its cidr", """\
      ingress:
        - from:
            - ipBlock:
                cidr: 10.0.0.0/24
                except:
                  - 10.0.1.0/28
""", 14, "spec.ingress[0].from[0].ipBlock.except[0]", "10.0.1.0/28 must be a strict subset of cidr 10.0.0.0/24"),
    ("endPort below port", """\
      ingress:
        - ports:
            - port: 90
              endPort: 80
""", 12, "spec.ingress[0].ports[0].endPort", "80 is below port 90 (allowed: >= port)"),
    ("endPort with a named port", """\
      ingress:
        - ports:
            - port: http
              endPort: 80
""", 12, "spec.ingress[0].ports[0].endPort", "may not be given with a named port ('http')"),
    ("unknown protocol", """\
      egress:
        - ports:
            - port: 80
              protocol: ICMP
""", 12, "spec.egress[0].ports[0].protocol", "'ICMP' is not allowed (allowed: TCP, UDP, SCTP)"),
    ("ipBlock with a selector", """\
      ingress:
        - from:
            - ipBlock: {cidr: 10.0.0.0/8}
              podSelector: {}
""", 11, "spec.ingress[0].from[0]", "may not specify both ipBlock and another peer"),
    ("unknown policyType", """\
      policyTypes: [Ingress, Sideways]
""", 9, "spec.policyTypes[1]", "'Sideways' is not allowed (allowed: Ingress, Egress)"),
    ("port out of range", """\
      ingress:
        - ports:
            - port: 65536
""", 11, "spec.ingress[0].ports[0].port", "65536 is out of range (allowed: 1-65535)"),
]  # fmt: skip


# `python -m dataplane.cli` would register the commands on a second copy of the module.
CLI = "from dataplane.cli import main; main()"


def write(tmp_path: Path, spec: str) -> Path:
    f = tmp_path / "bad.yaml"
    f.write_text(HEAD + spec + TAIL)
    return f


@pytest.mark.parametrize(
    ("spec", "line", "field", "what"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_errors_name_file_line_policy_and_field(
    tmp_path: Path, spec: str, line: int, field: str, what: str
) -> None:
    f = write(tmp_path, spec)
    with pytest.raises(TopologyError) as err:
        load_scenario(f)
    text = str(err.value)
    assert text.startswith(f"{f}:{line}: NetworkPolicy default/bad: {field}: "), text
    assert what in text


def test_host_bits_are_accepted_with_a_warning(tmp_path: Path) -> None:
    f = write(
        tmp_path,
        "      ingress:\n        - from:\n            - ipBlock: {cidr: 10.0.1.5/4}\n",
    )
    scenario, warnings = load_scenario(f)
    assert warnings == [
        f"{f}:11: NetworkPolicy default/bad: spec.ingress[0].from[0].ipBlock.cidr: "
        "10.0.1.5/4 has host bits set; it means 0.0.0.0/4"
    ]
    (pol,) = scenario.cluster.policies.values()
    peer = pol.ingress[0].peers[0]
    assert peer.ip_block is not None and str(peer.ip_block.cidr) == "0.0.0.0/4"


def test_defaults_are_the_api_servers(tmp_path: Path) -> None:
    f = write(tmp_path, "      egress:\n        - ports: [{port: 53}]\n")
    scenario, _ = load_scenario(f)
    (pol,) = scenario.cluster.policies.values()
    assert pol.policy_types == (
        "Ingress",
        "Egress",
    )  # Egress because egress rules exist
    assert pol.egress[0].ports[0].protocol.value == "TCP"
    f = write(tmp_path, "      ingress: []\n")
    (pol,) = load_scenario(f)[0].cluster.policies.values()
    assert pol.policy_types == ("Ingress",) and pol.ingress == ()


def test_more_than_two_policy_types_are_rejected(tmp_path: Path) -> None:
    f = write(tmp_path, "      policyTypes: [Ingress, Egress, Ingress]\n")
    with pytest.raises(TopologyError, match="policyTypes"):
        load_scenario(f)


def test_the_cli_exits_2_with_the_message(tmp_path: Path) -> None:
    f = write(tmp_path, CASES[3][1])
    for command in (["run"], ["matrix"], ["explain", "--from", "a/b", "--to", "c/d"]):
        r = subprocess.run(
            [sys.executable, "-c", CLI, *command, str(f)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert r.returncode == 2, (command, r.stdout, r.stderr)
        text = r.stderr.replace("\n", "")  # the console wraps long lines
        assert text.startswith(f"error: {f}:12: NetworkPolicy default/bad:")
        assert "Traceback" not in r.stderr
