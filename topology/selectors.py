"""Label selectors with Kubernetes semantics (k8s.io/apimachinery/pkg/labels), pure.

`matchLabels` and every `matchExpressions` requirement must all hold; the empty selector
matches everything; `NotIn` and `DoesNotExist` match an object that lacks the key.
"""

from __future__ import annotations

from collections.abc import Mapping

from topology.model import LabelSelector, Requirement, SelectorOp


def requirement_matches(req: Requirement, labels: Mapping[str, str]) -> bool:
    """Whether one `matchExpressions` item holds for `labels`.

    >>> r = Requirement("env", SelectorOp.NOT_IN, ("prod",))
    >>> requirement_matches(r, {}), requirement_matches(r, {"env": "prod"})
    (True, False)
    """
    if req.operator is SelectorOp.IN:
        return req.key in labels and labels[req.key] in req.values
    if req.operator is SelectorOp.NOT_IN:
        return req.key not in labels or labels[req.key] not in req.values
    if req.operator is SelectorOp.EXISTS:
        return req.key in labels
    return req.key not in labels


def matches(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    """Whether `selector` selects an object with `labels`.

    >>> matches(LabelSelector(), {"app": "web"})
    True
    >>> matches(LabelSelector({"app": "web"}), {"app": "web", "tier": "front"})
    True
    >>> matches(LabelSelector({"app": "web"}), {"app": "db"})
    False
    >>> gone = Requirement("role", SelectorOp.DOES_NOT_EXIST)
    >>> matches(LabelSelector(match_expressions=(gone,)), {"app": "web"})
    True
    >>> inside = Requirement("tier", SelectorOp.IN, ("front", "back"))
    >>> matches(LabelSelector(match_expressions=(inside,)), {})
    False
    """
    for key, value in selector.match_labels.items():
        if labels.get(key) != value:
            return False
    return all(requirement_matches(r, labels) for r in selector.match_expressions)


def matches_map(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """A Service's (or nodeSelector's) plain map selector: every pair must be present.

    >>> matches_map({"app": "web"}, {"app": "web", "x": "y"}), matches_map({"a": "b"}, {})
    (True, False)
    """
    return all(labels.get(k) == v for k, v in selector.items())


def is_empty(selector: LabelSelector) -> bool:
    """Whether the selector has no terms (and so matches everything).

    >>> is_empty(LabelSelector()), is_empty(LabelSelector({"a": "b"}))
    (True, False)
    """
    return not selector.match_labels and not selector.match_expressions


def format_selector(selector: LabelSelector) -> str:
    """The selector as kubectl prints it.

    >>> format_selector(LabelSelector({"role": "frontend"}))
    'role=frontend'
    >>> env = Requirement("env", SelectorOp.IN, ("dev", "qa"))
    >>> has_x = Requirement("x", SelectorOp.EXISTS)
    >>> format_selector(LabelSelector({"app": "web"}, (env, has_x)))
    'app=web,env in (dev,qa),x'
    >>> format_selector(LabelSelector())
    '<all>'
    """
    parts = [f"{k}={v}" for k, v in selector.match_labels.items()]
    for r in selector.match_expressions:
        if r.operator is SelectorOp.IN:
            parts.append(f"{r.key} in ({','.join(r.values)})")
        elif r.operator is SelectorOp.NOT_IN:
            parts.append(f"{r.key} notin ({','.join(r.values)})")
        elif r.operator is SelectorOp.EXISTS:
            parts.append(r.key)
        else:
            parts.append(f"!{r.key}")
    return ",".join(parts) if parts else "<all>"
