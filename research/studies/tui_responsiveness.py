"""How quickly the TUI answers on large triage stores -> research/results/tui.{json,md}.

Synthetic stores (no model run) of 1,000 / 5,000 / 20,000 posts; the app runs headless
(Textual's test driver) at 140x44 and every action is timed from the key press until the screen
has processed it. Times are medians over `--repeats` presses.

    python research/studies/tui_responsiveness.py [--sizes 1000,5000,20000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from crisislens.runtime.labels import LABEL_NAMES
from crisislens.runtime.reports import provenance, write_report
from crisislens.runtime.schema import Post, Prediction, TokenScore
from crisislens.runtime.store import TriageStore
from crisislens.tui.app import CrisisLensApp

ACTIONS = {  # name: keys pressed (each action is undone or neutral, so repeats measure the same work)
    "unbound key (test driver's own cost per key)": ["z"],
    "next post (j)": ["j"],
    "class filter (c)": ["c"],
    "clear filters (x)": ["x"],
    "search 'road' + Enter": ["slash", "r", "o", "a", "d", "enter"],
    "mark reviewed (r)": ["r"],
    "correct label (l, 3)": ["l", "3"],
}
REFERENCE_S = 0.1  # a reply within 0.1 s feels immediate (a usability rule of thumb, not an issue target)


def build_store(path: Path, n: int) -> None:
    items = []
    for i in range(n):
        label = LABEL_NAMES[i % len(LABEL_NAMES)]
        text = f"post {i}: flood water on the road near the bridge, {i % 97} people waiting for help"
        conf = 0.4 + (i * 37 % 60) / 100
        probs = {name: conf if name == label else (1 - conf) / 4 for name in LABEL_NAMES}
        words = [TokenScore(w, text.index(w), text.index(w) + len(w), 0.9) for w in ("flood", "road", "help")]
        items.append((Post(id=f"p{i:06d}", text=text), Prediction(post_id=f"p{i:06d}", label=label, probabilities=probs,
                                                                   token_rationale=tuple(words), timings={"model": 5.0})))
    with TriageStore(path) as store:
        for start in range(0, n, 2000):
            store.write_batch(items[start : start + 2000], "0" * 64, "synthetic")


async def measure(path: Path, repeats: int) -> dict[str, float]:
    t0 = time.perf_counter()
    app = CrisisLensApp(path, image_renderer="halfblock")
    out: dict[str, float] = {}
    async with app.run_test(size=(140, 44)) as pilot:
        await pilot.pause()
        out["open (store -> first screen)"] = time.perf_counter() - t0
        for name, keys in ACTIONS.items():
            times = []
            for _ in range(repeats):
                t = time.perf_counter()
                await pilot.press(*keys)
                await pilot.pause()
                times.append(time.perf_counter() - t)
                if name.startswith("search"):
                    await pilot.press("slash", "escape")  # back to the whole list
                    await pilot.pause()
                if name.startswith("class"):
                    await pilot.press("x")
                    await pilot.pause()
            out[name] = statistics.median(times)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,5000,20000")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--reports", type=Path, default=Path("research/results"))
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            path = Path(tmp) / f"store{n}.sqlite"
            build_store(path, n)
            results[str(n)] = {k: round(v, 3) for k, v in asyncio.run(measure(path, args.repeats)).items()}
            print(n, results[str(n)])
    prov = provenance(command="python research/studies/tui_responsiveness.py " + " ".join(
        f"--{k} {v}" for k, v in (("sizes", args.sizes), ("repeats", args.repeats))))
    actions = list(next(iter(results.values())))
    lines = ["# TUI responsiveness on large triage stores", "",
             f"Command: `{prov['command']}` · commit {prov['git_commit']} · {prov['created']} · "
             f"{prov['environment']['cpu_count']} CPU cores.", "",
             "Synthetic stores (no model run); the app runs headless at 140x44; seconds from the key press until",
             f"the screen has processed it, median of {args.repeats} presses (open: once). The 'unbound key' row is a key",
             "with no binding: what the test driver itself costs per key, included in every other row (the",
             "search row presses 6 keys).", "",
             "| action | " + " | ".join(f"{int(n):,} posts" for n in results) + " |",
             "|---|" + "---|" * len(results)]
    for a in actions:
        lines.append(f"| {a} | " + " | ".join(f"{results[n][a]:.3f} s" for n in results) + " |")
    base = {n: results[n][actions[1]] for n in results}  # the unbound key
    slow = [(a, n) for n in results for a in actions[2:] if results[n][a] - base[n] * len(ACTIONS[a]) > REFERENCE_S]
    lines += ["", f"Reference (a rule of thumb, not an issue target): a key answered within {REFERENCE_S} s feels immediate."]
    lines.append("Slower than that after taking off the driver's cost per key: " + (", ".join(f"{a} at {int(n):,} posts" for a, n in slow) if slow else "none") + ".")
    write_report("tui", {"sizes": sizes, "repeats": args.repeats, "seconds": results, "reference_s": REFERENCE_S,
                         "provenance": prov}, "\n".join(lines), args.reports)
    print(f"wrote {args.reports}/tui.json and {args.reports}/tui.md")


if __name__ == "__main__":
    main()
