"""The loader never fails but with a located project error, whatever the mutation.

Hypothesis mutates the shipped scenarios (`tests.fuzzing`: other types, extreme numbers,
odd strings, deleted, renamed and repeated keys, aliases, alias bombs, deep nesting) and
loads each result as the CLI does.  Loading succeeds or raises a SimError whose message
starts `FILE:LINE:`; a mutation known to be invalid is refused.  Deterministic
(`derandomize`) and bounded, so it runs in every `make test`; `bench/bench_fuzz.py` runs
10,000 of the same mutations in subprocesses with a timeout.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzzing import SCENARIOS, base_data, mutate, outcome

BASES = {path: base_data(path) for path in SCENARIOS}


class _Draws:
    """A `Chooser` over hypothesis draws, so a failure shrinks to the smallest choices."""

    def __init__(self, data: st.DataObject) -> None:
        self.data = data

    def randrange(self, stop: int) -> int:
        return self.data.draw(st.integers(0, stop - 1))


def test_the_fuzzer_covers_the_shipped_scenarios() -> None:
    assert len(SCENARIOS) >= 30
    assert all(isinstance(data, dict) for data in BASES.values())


@settings(
    max_examples=200,
    derandomize=True,
    deadline=timedelta(seconds=10),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
@given(path=st.sampled_from(SCENARIOS), data=st.data())
def test_a_mutated_scenario_loads_or_fails_with_a_located_error(
    path: Path, data: st.DataObject
) -> None:
    mutation = mutate(BASES[path], _Draws(data))
    verdict, message = outcome(mutation.text, path.name, path.parent)
    assert verdict in ("ok", "error"), f"{mutation.what}: {verdict}: {message}"
    if mutation.known_invalid:
        assert verdict == "error", f"{mutation.what}: accepted"
