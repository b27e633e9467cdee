"""pytest plugin: scenario files are test files, each step a test item.

Installed with the package (entry point `pytest11: dataplane`), so a team's `pytest` run
collects every scenario file under its test paths: a `.yaml`/`.yml` file with a top-level
`steps:` key.  Items are named `FILE::stepN-KIND[NAME]` (`-k step3` selects one); a scenario runs
once, in order, the first time one of its items runs, so deselecting items (`-k`) never
changes what later steps see.  A failed expectation reports what was expected, what
happened, the hop where they parted and the minimal trace; an invalid file is a collection
error naming the file, the line and what is wrong.

Turn collection off with `dataplane_scenarios = false` in the pytest configuration, or with
`-p no:dataplane`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # pragma: no cover
    from dataplane.result import StepResult
    from dataplane.scenario import Runner
    from topology.scenario import Scenario, Step


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "dataplane_scenarios",
        type="bool",
        default=True,
        help="collect dataplane scenario files (YAML with a top-level `steps:` key)",
    )


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> Any:
    if file_path.suffix not in (".yaml", ".yml"):
        return None
    if not parent.config.getini("dataplane_scenarios"):
        return None
    from dataplane.suite import is_scenario_file

    if is_scenario_file(file_path):
        return ScenarioFile.from_parent(parent, path=file_path)
    return None


class ScenarioFailure(Exception):
    """A step whose expectation did not hold."""

    def __init__(self, result: StepResult) -> None:
        super().__init__(result.message)
        self.result = result


class StepError(Exception):
    """A step that could not run (bad input found at run time)."""


class ScenarioFile(pytest.File):
    """One scenario file; runs its steps lazily, once, in order."""

    scenario: Scenario
    runner: Runner | None = None
    results: dict[int, StepResult]
    error: str | None = None

    def collect(self) -> Iterator[pytest.Item]:
        from topology.errors import SimError
        from topology.loader import load_scenario

        try:
            self.scenario, _warnings = load_scenario(self.path)
        except SimError as err:
            raise self.CollectError(str(err)) from None
        self.results = {}
        for i, step in enumerate(self.scenario.steps, 1):
            kind = type(step).__name__.removesuffix("Step").lower()
            label = f"step{i}-{kind}"
            if step.name:
                label += "[" + step.name.replace("::", ":") + "]"
            yield StepItem.from_parent(self, name=label, index=i, step=step)

    def result_of(self, index: int) -> StepResult:
        """Run the steps up to `index` (those not run yet) and return its result."""
        from dataplane.scenario import Runner
        from topology.errors import SimError

        if self.runner is None:
            self.runner = Runner(self.scenario)
        for i, step in enumerate(self.scenario.steps[:index], 1):
            if i in self.results:
                continue
            if self.error is not None:
                raise StepError(self.error)
            try:
                self.results[i] = self.runner.run_step(i, step)
            except SimError as err:
                self.error = f"step {i} could not run: {err}"
                raise StepError(self.error) from None
        return self.results[index]


class StepItem(pytest.Item):
    """One step of a scenario; passes when its expectation holds (or it has none)."""

    def __init__(self, *, index: int, step: Step, **kw: Any) -> None:
        super().__init__(**kw)
        self.index = index
        self.step = step

    def runtest(self) -> None:
        assert isinstance(self.parent, ScenarioFile)
        res = self.parent.result_of(self.index)
        if res.failed:
            raise ScenarioFailure(res)

    def repr_failure(
        self,
        excinfo: pytest.ExceptionInfo[BaseException],
        style: Any = None,
    ) -> str:
        if isinstance(excinfo.value, ScenarioFailure):
            from dataplane.junit import failure_text

            res = excinfo.value.result
            return f"{res.loc}: {res.title}\n{failure_text(res)}"
        if isinstance(excinfo.value, StepError):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        line = self.step.loc.line
        return self.path, (line - 1 if line else None), f"{self.path.name}: {self.name}"
