"""Ranking: how many posts of an urgent class a triage list puts where a responder looks first.

The list is ordered by priority (`crisislens.runtime.store.review.priority`, the expected severity
over the class probabilities); `urgent_at_top` counts the gold posts of one class among the first
`fraction` of it, and, for comparison, the same count under the rule the list used before:
severity of the top class × its confidence.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

from crisislens.runtime.labels import get_label
from crisislens.runtime.store.review import priority


@dataclass(frozen=True)
class UrgentAtTop:
    """Gold posts of `label` among the first `top` of `n` posts listed (`fraction` of the list)."""

    label: str
    fraction: float
    n: int
    top: int
    in_class: int  # gold posts of `label` in the whole list
    by_expected_severity: int  # among the first `top`, ranked by the list's priority
    by_top_class_severity: int  # among the first `top`, ranked by severity x confidence of the top class

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def top_class_priority(probabilities: Mapping[str, float]) -> float:
    """The earlier rule: severity of the most probable class × its probability."""
    label = max(probabilities, key=lambda name: probabilities[name])
    return get_label(label).severity * float(probabilities[label])


def urgent_at_top(
    gold: Sequence[str],
    probabilities: Sequence[Mapping[str, float]],
    ids: Sequence[str],
    label: str = "affected_individuals",
    fraction: float = 0.1,
) -> UrgentAtTop:
    """Count gold `label` posts in the first `fraction` of the list under both rules; ties are
    broken as the list breaks them (confidence, then post id)."""
    n = len(gold)
    top = max(1, math.ceil(n * fraction)) if n else 0

    def first(key: Callable[[Mapping[str, float]], float]) -> int:
        order = sorted(range(n), key=lambda i: (-key(probabilities[i]), -max(probabilities[i].values()), ids[i]))
        return sum(1 for i in order[:top] if gold[i] == label)

    return UrgentAtTop(
        label,
        fraction,
        n,
        top,
        sum(1 for g in gold if g == label),
        first(priority),
        first(top_class_priority),
    )


__all__ = ["UrgentAtTop", "top_class_priority", "urgent_at_top"]
