"""The label set: the 5 CrisisMMD humanitarian classes (Ofli et al., 2020).

The order of `LABELS` is the order of every probability vector, logit and confusion-matrix
row in CrisisLens; it never changes without a new bundle format version.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Label:
    name: str
    title: str  # the one name a person reads, everywhere (the app, tables, reports); `name` in files
    description: str
    colour: str  # hex colour for the TUI and reports
    priority: int  # 1 = look at first in the field
    severity: float  # weight in (0, 1] for sorting: expected severity over the class probabilities


LABELS: tuple[Label, ...] = (
    Label(
        "affected_individuals",
        "Affected people",
        "People injured, dead, missing, found, trapped or displaced.",
        "#d7263d",
        1,
        1.0,
    ),
    Label(
        "infrastructure_and_utility_damage",
        "Damage",
        "Damaged buildings, roads, bridges, power lines, vehicles or utilities.",
        "#f46036",
        2,
        0.8,
    ),
    Label(
        "rescue_volunteering_or_donation_effort",
        "Rescue & aid",
        "Rescue operations, volunteers, donations, relief supplies, urgent needs.",
        "#2e86ab",
        3,
        0.6,
    ),
    Label(
        "other_relevant_information",
        "Other info",
        "Crisis-related but none of the above: warnings, advice, sympathy, updates.",
        "#8e9aaf",
        4,
        0.3,
    ),
    Label(
        "not_humanitarian",
        "Not humanitarian",
        "Not useful for humanitarian response (ads, jokes, unrelated chatter).",
        "#5c5c5c",
        5,
        0.1,
    ),
)

LABEL_NAMES: tuple[str, ...] = tuple(label.name for label in LABELS)
_BY_NAME = {label.name: label for label in LABELS}

# CrisisMMD's 8 humanitarian labels merged into the 5 benchmark classes (Ofli et al., 2020).
CRISISMMD_MERGE: dict[str, str] = {
    "affected_individuals": "affected_individuals",
    "injured_or_dead_people": "affected_individuals",
    "missing_or_found_people": "affected_individuals",
    "infrastructure_and_utility_damage": "infrastructure_and_utility_damage",
    "vehicle_damage": "infrastructure_and_utility_damage",
    "rescue_volunteering_or_donation_effort": "rescue_volunteering_or_donation_effort",
    "other_relevant_information": "other_relevant_information",
    "not_humanitarian": "not_humanitarian",
}


def get_label(name: str) -> Label:
    """The `Label` called `name`; a clear `KeyError` otherwise."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown label {name!r}; expected one of: {', '.join(LABEL_NAMES)}") from None


def label_index(name: str) -> int:
    """Position of `name` in `LABELS` (the column of its probability)."""
    get_label(name)
    return LABEL_NAMES.index(name)


def to_humanitarian5(raw: str) -> str:
    """Map a CrisisMMD humanitarian label (8-class or already 5-class) to the 5 classes."""
    key = raw.strip().lower()
    try:
        return CRISISMMD_MERGE[key]
    except KeyError:
        raise ValueError(
            f"unknown CrisisMMD humanitarian label {raw!r}; expected one of: {', '.join(sorted(CRISISMMD_MERGE))}"
        ) from None


# MEDIC's 4 humanitarian image classes -> the 5 CrisisMMD classes (MEDIC has no "other").
MEDIC_TO_5: dict[str, str] = {
    "affected_injured_or_dead_people": "affected_individuals",
    "infrastructure_and_utility_damage": "infrastructure_and_utility_damage",
    "rescue_volunteering_or_donation_effort": "rescue_volunteering_or_donation_effort",
    "not_humanitarian": "not_humanitarian",
}


def medic_label(raw: str) -> str:
    """The 5-class label of a MEDIC humanitarian image label; KeyError if unknown."""
    return MEDIC_TO_5[raw.strip().lower()]


def parse_classes(spec: str | None) -> tuple[str, ...]:
    """Parse a `--classes a,b,...` option into label names in canonical order."""
    if not spec:
        return LABEL_NAMES
    names = [part.strip() for part in spec.split(",") if part.strip()]
    unknown = [n for n in names if n not in _BY_NAME]
    if unknown:
        raise ValueError(f"unknown class(es) {', '.join(unknown)}; expected from: {', '.join(LABEL_NAMES)}")
    if len(set(names)) < 2:
        raise ValueError("--classes needs at least two distinct classes")
    return tuple(n for n in LABEL_NAMES if n in names)
