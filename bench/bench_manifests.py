"""Loading real manifests: a dump of a live cluster (`kind: List`, live addresses, owners)
against the same pods written plainly (no status, no owners), and a folder of many files.

Reports objects loaded per second; the live fields (recorded addresses claimed, owners
resolved) and the folder walk should cost little beside YAML parsing and validation.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from topology.loader import load_scenario

ROUNDS = 3
NODES = 10
PODS_PER_NODE = 100
STEP = "steps:\n  - probe: {from: default/p-0-0, to: default/p-1-0, port: 80}\n"


def node(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": f"n{i}", "labels": {"kubernetes.io/hostname": f"n{i}"}},
        "spec": {"podCIDR": f"10.244.{i}.0/24"},
        "status": {
            "addresses": [{"type": "InternalIP", "address": f"172.18.0.{i + 2}"}]
        },
    }


def pod(i: int, j: int, live: bool) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"p-{i}-{j}",
            "namespace": "default",
            "labels": {"app": "p"},
        },
        "spec": {
            "nodeName": f"n{i}",
            "containers": [{"name": "c", "ports": [{"containerPort": 80}]}],
        },
    }
    if live:
        obj["metadata"]["ownerReferences"] = [
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": "rs",
                "controller": True,
            }
        ]
        obj["status"] = {
            "phase": "Running",
            "hostIP": f"172.18.0.{i + 2}",
            "podIP": f"10.244.{i}.{j + 2}",
            "podIPs": [{"ip": f"10.244.{i}.{j + 2}"}],
        }
    return obj


def write(folder: Path, live: bool, files: int) -> Path:
    items = [node(i) for i in range(NODES)]
    items += [pod(i, j, live) for i in range(NODES) for j in range(PODS_PER_NODE)]
    (folder / "objs").mkdir()
    chunk = -(-len(items) // files)
    for k in range(files):
        part = items[k * chunk : (k + 1) * chunk]
        doc = {"apiVersion": "v1", "kind": "List", "items": part}
        (folder / "objs" / f"{k:04d}.yaml").write_text(yaml.safe_dump(doc))
    scenario = folder / "s.yaml"
    scenario.write_text(
        "name: bench\ncluster: {nodeCIDR: 172.18.0.0/24}\n"
        "manifests:\n  - {file: objs}\n" + STEP
    )
    return scenario


def best(path: Path) -> float:
    times = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        load_scenario(path)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    total = NODES + NODES * PODS_PER_NODE
    for label, live, files in (
        ("plain pods, one file", False, 1),
        ("dump (status, owners), one file", True, 1),
        ("dump, a folder of 100 files", True, 100),
    ):
        with tempfile.TemporaryDirectory() as tmp:
            seconds = best(write(Path(tmp), live, files))
        print(
            f"  {label:34} {total} objects {seconds:.3f} s ({total / seconds:,.0f}/s)"
        )


if __name__ == "__main__":
    main()
