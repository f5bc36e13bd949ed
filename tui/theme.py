"""Short class names and colours the TUI uses beside `runtime.labels` (which holds the full titles)."""

from __future__ import annotations

SHORT_TITLES = {
    "affected_individuals": "Affected",
    "infrastructure_and_utility_damage": "Damage",
    "rescue_volunteering_or_donation_effort": "Rescue/aid",
    "other_relevant_information": "Other info",
    "not_humanitarian": "Not humanit.",
}
RATIONALE = "#ffb000"  # highlighted words and outlined patches share one colour
