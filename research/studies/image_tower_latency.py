"""EfficientNet-Lite0 at batch 1, by photo size and by how much of it runs -> research/results/image_tower.{json,md}

The student's batch-1 time is mostly its image tower (`research/results/student_latency.md`). This
times the frozen tower (PyTorch, CPU) at several photo sizes, whole (stem, 16 blocks and the
1x1 head to 1280 channels, as `ImageTower` runs it) and cut after a stage (the stride-16
stage 5, 112 channels; stage 6, 192 channels; the last block, 320 channels, without the head),
the variants taking turns call by call so a slow spell of this shared machine hits all alike.
Random pixels: the time of a convolutional network does not depend on them.

    python research/studies/image_tower_latency.py
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crisislens.distill.teacher import ImageTower

from _report import publish, run_line  # research/studies/_report.py

# (name, blocks run; None = the whole tower with its head, as ImageTower runs it)
CUTS: tuple[tuple[str, int | None], ...] = (("whole (head, 1280 ch)", None), ("to block 16 (320 ch)", 16),
                                           ("to stage 6 (192 ch)", 15), ("to stage 5 (112 ch)", 11))


def measure(sizes: list[int], rounds: int, reps: int, warmup: int = 3) -> dict[str, Any]:
    tower = ImageTower(grid=None)
    towers = {blocks: ImageTower(tower.net, grid=None, blocks=blocks) for _, blocks in CUTS}
    variants: dict[tuple[int, str], Callable[[], torch.Tensor]] = {}
    shapes: dict[tuple[int, str], list[int]] = {}
    for size in sizes:
        x = torch.randn(1, 3, size, size)
        for name, blocks in CUTS:
            f = towers[blocks].features
            variants[(size, name)] = lambda f=f, x=x: f(x)
    times: dict[tuple[int, str], list[float]] = {k: [] for k in variants}
    with torch.no_grad():
        for k, f in variants.items():
            for _ in range(warmup):
                f()
            shapes[k] = list(f().shape[1:])
        for r in range(rounds):
            order = list(variants) if r % 2 == 0 else list(variants)[::-1]
            for _ in range(reps):
                for k in order:
                    t0 = time.perf_counter()
                    variants[k]()
                    times[k].append((time.perf_counter() - t0) * 1000)
    rows = [{"size": size, "cut": name, "median_ms": float(np.median(times[(size, name)])),
             "p90_ms": float(np.percentile(times[(size, name)], 90)), "runs": len(times[(size, name)]),
             "output": shapes[(size, name)]} for size, name in variants]
    return {"threads": torch.get_num_threads(), "rows": rows}


def to_markdown(result: dict[str, Any], prov: dict[str, Any]) -> str:
    lines = ["# EfficientNet-Lite0 at batch 1, by photo size and depth (PyTorch CPU)", "",
             run_line(prov, result["seconds"], f" · {result['threads']} threads"), "",
             "All variants in one process, taking turns call by call; median and p90 over "
             f"{result['rows'][0]['runs']} calls each. Output: channels x grid.", "",
             "| photo px | tower | median ms | p90 ms | output | vs whole at this size |", "|---|---|---|---|---|---|"]
    whole = {r["size"]: r["median_ms"] for r in result["rows"] if r["cut"] == CUTS[0][0]}
    for r in result["rows"]:
        out = f"{r['output'][0]} x {r['output'][1]}x{r['output'][2]}"
        lines.append(f"| {r['size']} | {r['cut']} | {r['median_ms']:.2f} | {r['p90_ms']:.2f} | {out} | "
                     f"{r['median_ms'] - whole[r['size']]:+.2f} ms |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 192, 160, 128])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("research/results"))
    args = parser.parse_args(argv)
    started = time.perf_counter()
    result = measure(args.sizes, args.rounds, args.reps)
    result["seconds"] = round(time.perf_counter() - started, 1)
    publish("image_tower", " ".join(["python", "research/studies/image_tower_latency.py", *(argv or sys.argv[1:])]),
            result, to_markdown, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
