"""Rebuild samples/: the demo posts `make demo` and `make screenshot` triage.

Every post here is **invented** for the demo (texts written for CrisisLens, places fictitious)
and every photo is drawn by this script (Pillow shapes, fixed seed): nothing is copied from
CrisisMMD or any other dataset, whose licences forbid committing their tweets. The 30 posts
cover the five classes a responder meets, half of them with a photo, and carry the label the
author meant (shown as "gold label in the input").

    python samples/make_samples.py                 # rewrite samples/posts.jsonl and samples/images/

To triage real held-out CrisisMMD posts instead, point the app at the data root's file (not
copied into the repository): `crisislens tui ../shared/data/crisismmd/task_humanitarian_text_img_agreed_lab_test.tsv
--image-root ../shared/data/images/crisismmd --bundle models/crisislens-student`.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
SIZE = (384, 288)
SEED = 7

Draw = Callable[[ImageDraw.ImageDraw, random.Random], None]


# ----------------------------------------------------------------------------- drawn photos


def _sky(d: ImageDraw.ImageDraw, top: tuple[int, int, int], bottom: tuple[int, int, int], height: int) -> None:
    for y in range(height):
        t = y / max(height - 1, 1)
        d.line([(0, y), (SIZE[0], y)], fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom)))


def _house(d: ImageDraw.ImageDraw, x: int, base: int, w: int, h: int, wall: tuple[int, int, int]) -> None:
    d.rectangle([x, base - h, x + w, base], fill=wall, outline=(60, 50, 40))
    d.polygon([(x - 6, base - h), (x + w // 2, base - h - w // 2), (x + w + 6, base - h)], fill=(150, 60, 45))
    d.rectangle([x + w // 4, base - h + 10, x + w // 4 + 12, base - h + 22], fill=(210, 220, 240))


def _water(d: ImageDraw.ImageDraw, r: random.Random, level: int, colour: tuple[int, int, int]) -> None:
    d.rectangle([0, level, SIZE[0], SIZE[1]], fill=colour)
    for y in range(level + 8, SIZE[1], 14):
        for x in range(-20, SIZE[0], 40):
            dx = r.randint(0, 12)
            d.arc([x + dx, y, x + dx + 30, y + 8], 200, 340, fill=tuple(min(255, c + 40) for c in colour))


def flooded_street(d: ImageDraw.ImageDraw, r: random.Random) -> None:
    _sky(d, (150, 160, 175), (205, 205, 200), 176)
    for i, x in enumerate(range(20, SIZE[0] - 40, 90)):
        _house(d, x, 210, 60, 70 + 10 * (i % 2), (200 - 20 * (i % 3), 185, 160))
    _water(d, r, 175, (120, 100, 70))
    d.ellipse([58, 112, 66, 120], fill=(60, 40, 30))  # someone waiting on a roof
    d.line([(62, 120), (62, 134)], fill=(200, 40, 40), width=3)


def collapsed_building(d: ImageDraw.ImageDraw, r: random.Random) -> None:
    _sky(d, (170, 185, 200), (225, 220, 210), SIZE[1])
    d.rectangle([230, 60, 330, 230], fill=(170, 165, 155), outline=(90, 90, 90))
    for _ in range(40):  # rubble
        x, y = r.randint(20, 240), r.randint(150, 260)
        s = r.randint(8, 30)
        g = r.randint(110, 170)
        d.polygon([(x, y), (x + s, y + r.randint(-6, 6)), (x + s // 2, y - s // 2)], fill=(g, g - 5, g - 12))
    d.polygon([(40, 120), (210, 170), (200, 185), (30, 135)], fill=(140, 135, 130))  # slab
    d.line([(0, 262), (SIZE[0], 262)], fill=(90, 80, 70), width=8)


def broken_bridge(d: ImageDraw.ImageDraw, r: random.Random) -> None:
    _sky(d, (160, 190, 215), (220, 230, 235), 140)
    d.rectangle([0, 140, SIZE[0], 180], fill=(95, 120, 70))
    _water(d, r, 180, (90, 110, 120))
    d.rectangle([0, 150, 160, 166], fill=(120, 120, 120))
    d.polygon([(160, 150), (185, 175), (185, 191), (160, 166)], fill=(110, 110, 110))  # the fallen span
    d.rectangle([230, 150, SIZE[0], 166], fill=(120, 120, 120))
    for x in (40, 110, 270, 340):
        d.rectangle([x, 166, x + 10, 230], fill=(100, 100, 100))


def relief_camp(d: ImageDraw.ImageDraw, r: random.Random) -> None:
    _sky(d, (150, 185, 225), (215, 230, 240), 120)
    d.rectangle([0, 120, SIZE[0], SIZE[1]], fill=(180, 160, 120))
    for row, y in enumerate((150, 200, 250)):
        for x in range(10 + 25 * row, SIZE[0], 75):
            colour = (235, 235, 230) if (x // 75 + row) % 2 else (70, 120, 190)
            d.polygon([(x, y), (x + 30, y - 35), (x + 60, y)], fill=colour, outline=(90, 90, 90))


def supplies(d: ImageDraw.ImageDraw, r: random.Random) -> None:
    d.rectangle([0, 0, SIZE[0], SIZE[1]], fill=(200, 195, 185))
    d.rectangle([0, 230, SIZE[0], SIZE[1]], fill=(150, 140, 125))
    for col in range(6):
        for level in range(r.randint(2, 4)):
            x, y = 20 + col * 58, 230 - (level + 1) * 38
            d.rectangle([x, y, x + 52, y + 36], fill=(170, 125, 75), outline=(110, 80, 45))
            d.line([(x, y + 18), (x + 52, y + 18)], fill=(120, 90, 55))
    for x in range(40, 340, 30):  # water bottles in front
        d.rectangle([x, 245, x + 14, 280], fill=(150, 200, 235), outline=(80, 130, 180))


def cracked_road(d: ImageDraw.ImageDraw, r: random.Random) -> None:
    _sky(d, (175, 195, 215), (225, 225, 220), 110)
    d.polygon([(150, 110), (234, 110), (SIZE[0], SIZE[1]), (0, SIZE[1])], fill=(95, 95, 100))
    x, y = 190, 115
    while y < SIZE[1]:
        nx, ny = x + r.randint(-25, 25), y + r.randint(15, 30)
        d.line([(x, y), (nx, ny)], fill=(25, 20, 20), width=max(2, (ny - 100) // 30))
        x, y = nx, ny


def downed_lines(d: ImageDraw.ImageDraw, r: random.Random) -> None:
    _sky(d, (120, 130, 150), (190, 190, 195), SIZE[1])
    d.rectangle([0, 220, SIZE[0], SIZE[1]], fill=(80, 110, 60))
    d.line([(60, 220), (60, 60)], fill=(90, 70, 50), width=8)
    d.line([(300, 220), (240, 90)], fill=(90, 70, 50), width=8)  # leaning pole
    for k in range(3):
        d.line([(60, 70 + 8 * k), (150, 200 + 6 * k), (240, 100 + 8 * k)], fill=(20, 20, 20), width=2)


def rescue_boat(d: ImageDraw.ImageDraw, r: random.Random) -> None:
    _sky(d, (160, 170, 185), (210, 210, 205), 131)
    for x in (30, 250):
        _house(d, x, 150, 70, 50, (190, 180, 160))
    _water(d, r, 130, (115, 100, 75))
    d.polygon([(110, 200), (270, 200), (250, 225), (130, 225)], fill=(235, 120, 30), outline=(120, 60, 20))
    for i, x in enumerate(range(140, 250, 28)):
        d.ellipse([x, 178, x + 12, 190], fill=(70, 50, 40))
        d.rectangle([x + 1, 190, x + 11, 202], fill=(230, 200, 40) if i % 2 else (200, 60, 60))


def sunset(d: ImageDraw.ImageDraw, r: random.Random) -> None:
    _sky(d, (250, 170, 90), (120, 70, 120), 190)
    d.ellipse([150, 130, 230, 210], fill=(255, 215, 120))
    d.rectangle([0, 180, SIZE[0], SIZE[1]], fill=(40, 60, 110))
    for y in range(190, SIZE[1], 12):
        d.line([(160 - (y - 180) // 3, y), (220 + (y - 180) // 3, y)], fill=(230, 170, 110), width=2)


def plate_of_food(d: ImageDraw.ImageDraw, r: random.Random) -> None:
    d.rectangle([0, 0, SIZE[0], SIZE[1]], fill=(140, 95, 60))
    d.ellipse([70, 30, 314, 260], fill=(245, 245, 240), outline=(200, 200, 200))
    d.ellipse([120, 70, 264, 220], fill=(230, 190, 90))
    for _ in range(25):
        x, y = r.randint(130, 250), r.randint(80, 205)
        d.ellipse([x, y, x + 10, y + 10], fill=r.choice([(190, 40, 40), (60, 140, 60), (120, 70, 30)]))


def stadium(d: ImageDraw.ImageDraw, r: random.Random) -> None:
    _sky(d, (110, 160, 220), (170, 200, 235), 80)
    d.rectangle([0, 200, SIZE[0], SIZE[1]], fill=(60, 150, 70))
    for y in range(90, 200, 10):
        for x in range(0, SIZE[0], 9):
            d.ellipse([x + r.randint(0, 3), y, x + 6, y + 6], fill=r.choice([(200, 40, 40), (240, 240, 240), (40, 40, 160)]))
    d.arc([120, 180, 264, 280], 180, 360, fill=(240, 240, 240), width=3)


DRAWINGS: dict[str, Draw] = {
    "flooded_street": flooded_street, "collapsed_building": collapsed_building, "broken_bridge": broken_bridge,
    "relief_camp": relief_camp, "supplies": supplies, "cracked_road": cracked_road, "downed_lines": downed_lines,
    "rescue_boat": rescue_boat, "sunset": sunset, "plate_of_food": plate_of_food, "stadium": stadium,
}


# ----------------------------------------------------------------------------- the posts

# (id, text, drawing or None, label): invented, in the voice of posts a responder would see.
POSTS: list[tuple[str, str, str | None, str]] = [
    ("s01", "Water up to the first floor on Tanner Road in Marrow Creek, a family of five is waiting on the roof "
     "with two children. Please send a boat #MarrowFloods", "flooded_street", "affected_individuals"),
    ("s02", "Eastbank hospital says 14 people injured and 3 missing after the landslide above the tea estate last "
     "night", None, "affected_individuals"),
    ("s03", "Our neighbours lost everything, their house is gone and grandma has a broken leg, no ambulance yet",
     None, "affected_individuals"),
    ("s04", "Rescuers pulled an elderly man out of the mud in Harlow district this morning, he is alive and at the "
     "clinic now", "rescue_boat", "affected_individuals"),
    ("s05", "Death toll from the floods in the southern province rises to 27, hundreds displaced", None,
     "affected_individuals"),
    ("s06", "Kids sleeping at the temple hall tonight, they have no dry clothes and several have fever",
     "relief_camp", "affected_individuals"),
    ("s07", "The old bridge on the Kelly river collapsed, route 4 to Eastbank is cut, use the hill road",
     "broken_bridge", "infrastructure_and_utility_damage"),
    ("s08", "Whole block of flats came down on Station Street after the quake, rubble everywhere",
     "collapsed_building", "infrastructure_and_utility_damage"),
    ("s09", "Huge crack across the highway near the Miller junction, two lanes closed #quake", "cracked_road",
     "infrastructure_and_utility_damage"),
    ("s10", "Power lines down on Orchard Lane, the pole is leaning over the road. Stay away, still live?",
     "downed_lines", "infrastructure_and_utility_damage"),
    ("s11", "No electricity or running water in Marrow Creek since Tuesday, the pumping station is flooded",
     None, "infrastructure_and_utility_damage"),
    ("s12", "School roof blown off in Harlow, classrooms full of water and broken glass", None,
     "infrastructure_and_utility_damage"),
    ("s13", "Mobile network down across the valley after the storm, the tower on Crow Hill fell", None,
     "infrastructure_and_utility_damage"),
    ("s14", "Volunteers at the community hall are packing dry rations, drop off rice, lentils and candles before "
     "6pm", "supplies", "rescue_volunteering_or_donation_effort"),
    ("s15", "Navy boats are evacuating people from the low streets of Marrow Creek, 200 moved to the school so far",
     "rescue_boat", "rescue_volunteering_or_donation_effort"),
    ("s16", "Red cross camp set up at the Eastbank grounds with tents, water and a medical team", "relief_camp",
     "rescue_volunteering_or_donation_effort"),
    ("s17", "Donate to the flood relief fund: every bit helps families rebuild. Link in bio", None,
     "rescue_volunteering_or_donation_effort"),
    ("s18", "Thank you to the truck drivers who brought 4 tonnes of drinking water to Harlow today", "supplies",
     "rescue_volunteering_or_donation_effort"),
    ("s19", "We need volunteers with 4x4s to reach the villages past the broken bridge, meet at the bus stand 7am",
     None, "rescue_volunteering_or_donation_effort"),
    ("s20", "Blood donors of type O needed at Eastbank general hospital for the injured", None,
     "rescue_volunteering_or_donation_effort"),
    ("s21", "Met office: more heavy rain expected in the southern province until Friday, rivers still rising", None,
     "other_relevant_information"),
    ("s22", "Schools in three districts will stay closed on Monday because of the floods", None,
     "other_relevant_information"),
    ("s23", "Map of the flooded areas and open shelters, updated every hour by the district office", None,
     "other_relevant_information"),
    ("s24", "The cyclone is now category 2 and moving north east, landfall expected tomorrow night", None,
     "other_relevant_information"),
    ("s25", "Flights from the capital are delayed because of the storm, check with your airline", None,
     "other_relevant_information"),
    ("s26", "What a sunset at the beach tonight, best holiday ever", "sunset", "not_humanitarian"),
    ("s27", "Lunch with the team, this curry is amazing", "plate_of_food", "not_humanitarian"),
    ("s28", "Match day! Full stadium and the home side two up at half time", "stadium", "not_humanitarian"),
    ("s29", "New phone arrived today, the camera is so good", None, "not_humanitarian"),
    ("s30", "Happy birthday to my little sister, love you!!", None, "not_humanitarian"),
]


def main() -> None:
    images = HERE / "images"
    shutil.rmtree(images, ignore_errors=True)
    images.mkdir()
    count = 0
    with (HERE / "posts.jsonl").open("w", encoding="utf-8") as out:
        for i, (pid, text, drawing, label) in enumerate(POSTS):
            record: dict[str, str] = {"id": pid, "text": text, "label": label, "source": "invented for the demo"}
            if drawing is not None:
                image = Image.new("RGB", SIZE, "white")
                DRAWINGS[drawing](ImageDraw.Draw(image), random.Random(SEED * 100 + i))
                image.save(images / f"{pid}.jpg", quality=88)
                record["image"] = f"images/{pid}.jpg"
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    print(f"wrote {count} posts to {HERE / 'posts.jsonl'} ({sum(1 for p in POSTS if p[2])} with a drawn photo)")


if __name__ == "__main__":
    main()
