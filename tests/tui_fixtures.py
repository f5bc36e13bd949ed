"""A deterministic triage store for the TUI tests and snapshots: fixed posts, fixed predictions
(no model run, so no timing noise), photos drawn with Pillow."""

from __future__ import annotations

import re
from pathlib import Path

from PIL import Image, ImageDraw

from crisislens.runtime.labels import LABEL_NAMES
from crisislens.runtime.schema import Post, Prediction, TokenScore
from crisislens.runtime.store import TriageStore

INJECTION = "[bold red]PWNED[/] \x1b[2J\x1b[31mred\x1b[0m zero\u200bwidth \u202eevil\u202c [link=http://x]click[/link]"

# (post id, text, label, confidence, photo?, rationale words)
POSTS = [
    ("p01", "Family of five trapped on the roof, water still rising near the bridge", "affected_individuals", 0.91, True,
     {"trapped": 0.97, "roof": 0.81, "rising": 0.64}),
    ("p02", "Main road to the hospital collapsed after the landslide", "infrastructure_and_utility_damage", 0.88, True,
     {"road": 0.72, "collapsed": 0.95, "landslide": 0.83}),
    ("p03", "Volunteers needed at the stadium shelter, bring water and blankets",
     "rescue_volunteering_or_donation_effort", 0.79, False, {"volunteers": 0.93, "shelter": 0.77, "blankets": 0.58}),
    ("p04", "Rain warning extended until Friday for the coastal districts", "other_relevant_information", 0.66, False,
     {"warning": 0.88, "extended": 0.52}),
    ("p05", "Great match last night, what a goal", "not_humanitarian", 0.97, True, {"match": 0.71, "goal": 0.69}),
    ("p06", INJECTION, "not_humanitarian", 0.55, False, {"red]PWNED[/]": 0.9, "\u202eevil\u202c": 0.7}),
    ("p07", "Power lines down on the east side, no electricity since morning", "infrastructure_and_utility_damage", 0.58,
     True, {"Power": 0.76, "down": 0.8, "electricity": 0.9}),
    ("p08", "Two people missing after the boat capsized", "affected_individuals", 0.52, False,
     {"missing": 0.96, "capsized": 0.85}),
]


def probabilities(label: str, confidence: float) -> dict[str, float]:
    rest = (1 - confidence) / (len(LABEL_NAMES) - 1)
    return {name: confidence if name == label else rest for name in LABEL_NAMES}


def tokens(text: str, weights: dict[str, float]) -> tuple[TokenScore, ...]:
    return tuple(TokenScore(m.group(), m.start(), m.end(), weights.get(m.group(), 0.1))
                 for m in re.finditer(r"\S+", text))


def grid(seed: int) -> tuple[tuple[float, ...], ...]:
    return tuple(tuple(round(((r * 7 + c) * (seed + 3) % 49) / 48, 3) for c in range(7)) for r in range(7))


def photo(path: Path, seed: int) -> Path:
    img = Image.new("RGB", (160, 120), (40 + 20 * seed, 90, 140))
    draw = ImageDraw.Draw(img)
    draw.rectangle((20 + 5 * seed, 30, 90, 100), fill=(200, 160 - 10 * seed, 60))
    draw.ellipse((100, 10, 150, 60), fill=(230, 230, 230))
    img.save(path)
    return path


def build_store(folder: Path, name: str = "demo.sqlite") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for n, (pid, text, label, conf, has_photo, weights) in enumerate(POSTS):
        image = photo(folder / f"{pid}.png", n) if has_photo else None
        post = Post(id=pid, text=text, image=image, source="fixture", label=label if n % 3 else None)
        pred = Prediction(post_id=pid, label=label, probabilities=probabilities(label, conf),
                          token_rationale=tokens(text, weights), patch_rationale=grid(n) if has_photo else None,
                          timings={"preprocess": 1.5, "model": 7.25}, model_id="fixture:v1")
        items.append((post, pred))
    path = folder / name
    with TriageStore(path) as store:
        store.write_batch(items, "0" * 64, "fixture")
    return path
