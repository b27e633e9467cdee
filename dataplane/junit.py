"""JUnit XML for CI systems (Jenkins, GitLab, GitHub Actions reporters, Buildkite).

One `<testsuite>` per scenario file, one `<testcase>` per step: `classname` is the file's
path without suffix, dots for slashes (`scenarios.cross-node-vxlan`), `name` is
`step N: TITLE`, or `step N: NAME: TITLE` for a step with a `name`, with `file` and
`line` of the step.  A failed expectation is a `<failure>`
whose message says what was expected, what happened and the hop where they parted, and
whose text adds the minimal trace; a file that cannot be loaded, or a step that cannot
run, is an `<error>`.  Times are the wall time of each step, in seconds.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path

from dataplane.render import step_label
from dataplane.result import StepResult
from dataplane.suite import FileRun
from topology.errors import TopologyError

# Characters XML 1.0 cannot carry, even escaped.
_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _clean(text: str) -> str:
    return _INVALID.sub("?", text)


def classname(path: Path) -> str:
    """`scenarios/lab.yaml` -> `scenarios.lab` (how CI systems group test cases).

    >>> classname(Path("scenarios/cross-node.vxlan.yaml"))
    'scenarios.cross-node_vxlan'
    """
    parts = [p for p in path.with_suffix("").parts if p not in ("/", ".", "..")]
    return ".".join(p.replace(".", "_") for p in parts)


def failure_text(res: StepResult) -> str:
    """The body of a `<failure>`: expected, actual, where, and the trace(s)."""
    from dataplane import render

    lines = [f"step:     {res.name}"] if res.name else []
    lines += [
        f"expected: {res.expected}",
        f"actual:   {res.actual}",
        f"at:       {res.loc}",
        "",
        res.message,
    ]
    if res.trace is not None:
        lines += ["", render.minimal(res.trace)]
    return "\n".join(lines)


def _case(run: FileRun, res: StepResult, seconds: float) -> ET.Element:
    case = ET.Element(
        "testcase",
        classname=classname(run.path),
        name=_clean(f"step {res.index}: {step_label(res)}"),
        file=str(run.path),
        line=str(res.loc.line),
        time=f"{seconds:.3f}",
    )
    if res.failed:
        fail = ET.SubElement(
            case, "failure", message=_clean(res.message), type="expectation"
        )
        fail.text = _clean(failure_text(res))
    return case


def to_xml(runs: Iterable[FileRun]) -> ET.Element:
    """The `<testsuites>` element of a whole `dataplane test` run."""
    root = ET.Element("testsuites", name="dataplane")
    totals = {"tests": 0, "failures": 0, "errors": 0}
    total_time = 0.0
    for run in runs:
        suite = ET.SubElement(root, "testsuite", name=_clean(run.name))
        suite.set("file", str(run.path))
        for res, seconds in zip(run.steps, run.durations, strict=True):
            suite.append(_case(run, res, seconds))
        errors = 0
        if run.error is not None:
            errors = 1
            index = len(run.steps) + 1
            what = f"step {index}" if run.scenario is not None else "load"
            case = ET.SubElement(
                suite,
                "testcase",
                classname=classname(run.path),
                name=what,
                file=str(run.path),
                time="0.000",
            )
            err = ET.SubElement(case, "error", message=_clean(run.error), type="input")
            err.text = _clean(run.error)
        counts = {
            "tests": len(run.steps) + errors,
            "failures": run.failed,
            "errors": errors,
        }
        for k, v in counts.items():
            suite.set(k, str(v))
            totals[k] += v
        suite.set("skipped", "0")
        suite.set("time", f"{run.time:.3f}")
        total_time += run.time
    for k, v in totals.items():
        root.set(k, str(v))
    root.set("time", f"{total_time:.3f}")
    return root


def write_junit(runs: Iterable[FileRun], path: str | Path) -> None:
    """Write the JUnit XML report of `runs` to `path`."""
    tree = ET.ElementTree(to_xml(runs))
    ET.indent(tree)
    parent = Path(path).parent
    if parent.exists() and not parent.is_dir():
        raise TopologyError(
            f"{path}: cannot write the JUnit report: {parent} is not a directory"
        )
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tree.write(path, encoding="utf-8", xml_declaration=True)
    except OSError as err:
        raise TopologyError(
            f"{path}: cannot write the JUnit report: {err.strerror or err}"
        ) from None


__all__ = ["classname", "to_xml", "write_junit"]
