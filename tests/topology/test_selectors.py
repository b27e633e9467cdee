"""Label selectors: Kubernetes semantics, and matchLabels equals the equivalent In terms."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from topology.model import LabelSelector, Requirement, SelectorOp
from topology.selectors import format_selector, matches, matches_map

IN, NOT_IN = SelectorOp.IN, SelectorOp.NOT_IN
EXISTS, ABSENT = SelectorOp.EXISTS, SelectorOp.DOES_NOT_EXIST


def sel(labels: dict[str, str] | None = None, *reqs: Requirement) -> LabelSelector:
    return LabelSelector(labels or {}, tuple(reqs))


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        (sel(), {}, True),
        (sel(), {"app": "web"}, True),
        (sel({"app": "web"}), {"app": "web"}, True),
        (sel({"app": "web"}), {}, False),
        (sel({"app": "web", "tier": "a"}), {"app": "web"}, False),
        (sel(None, Requirement("env", IN, ("a", "b"))), {"env": "b"}, True),
        (sel(None, Requirement("env", IN, ("a",))), {}, False),
        (sel(None, Requirement("env", NOT_IN, ("a",))), {}, True),
        (sel(None, Requirement("env", NOT_IN, ("a",))), {"env": "a"}, False),
        (sel(None, Requirement("env", NOT_IN, ("a",))), {"env": "c"}, True),
        (sel(None, Requirement("env", EXISTS)), {"env": ""}, True),
        (sel(None, Requirement("env", EXISTS)), {}, False),
        (sel(None, Requirement("env", ABSENT)), {}, True),
        (sel(None, Requirement("env", ABSENT)), {"env": "x"}, False),
        (sel({"app": "web"}, Requirement("env", ABSENT)), {"app": "web", "env": "x"}, False),
    ],
    ids=[
        "empty-none", "empty-any", "labels-hit", "labels-missing", "labels-all-needed",
        "in-hit", "in-absent", "notin-absent", "notin-hit", "notin-other", "exists-empty",
        "exists-absent", "absent-absent", "absent-present", "and",
    ],
)  # fmt: skip
def test_matches(
    selector: LabelSelector, labels: dict[str, str], expected: bool
) -> None:
    assert matches(selector, labels) is expected


keys = st.sampled_from(["app", "tier", "env", "example.com/role"])
values = st.sampled_from(["", "web", "db", "a.b", "x-1"])
label_maps = st.dictionaries(keys, values, max_size=4)


@settings(derandomize=True, database=None)
@given(label_maps, label_maps)
def test_match_labels_equals_in_expressions(
    wanted: dict[str, str], labels: dict[str, str]
) -> None:
    as_in = sel(None, *(Requirement(k, IN, (v,)) for k, v in wanted.items()))
    assert matches(sel(wanted), labels) == matches(as_in, labels)
    assert matches(sel(wanted), labels) == matches_map(wanted, labels)


@settings(derandomize=True, database=None)
@given(keys, st.lists(values, min_size=1, max_size=3), label_maps)
def test_not_in_is_the_negation_of_in(
    key: str, vals: list[str], labels: dict[str, str]
) -> None:
    inside = sel(None, Requirement(key, IN, tuple(vals)))
    outside = sel(None, Requirement(key, NOT_IN, tuple(vals)))
    assert matches(inside, labels) != matches(outside, labels)


@settings(derandomize=True, database=None)
@given(keys, label_maps)
def test_exists_is_the_negation_of_does_not_exist(
    key: str, labels: dict[str, str]
) -> None:
    assert matches(sel(None, Requirement(key, EXISTS)), labels) != matches(
        sel(None, Requirement(key, ABSENT)), labels
    )


def test_format_selector() -> None:
    selector = sel(
        {"app": "web"},
        Requirement("env", NOT_IN, ("prod",)),
        Requirement("gone", ABSENT),
    )
    assert format_selector(selector) == "app=web,env notin (prod),!gone"
