"""The bench's whole-process measures beside the rows: `crisislens triage`'s peak memory as the
number of posts grows, its cold start on one post, and the end-to-end peers.

- Memory: `crisislens triage` at its defaults on synthetic text posts (1k, 10k, 100k: made up from
  a fixed word list, no real post), each a fresh process and a fresh store; its peak RSS (the
  process's own, from `wait4`) per size, and the growth from the smallest to the largest.
- Cold start: `crisislens triage` of one text post into a new store, the whole process (start,
  imports, model load, reading, the prediction, the store written, exit), after one warm-up turn
  that is not counted.
- Peers: a PyTorch row (`crisislens.bench` entry points) run end to end on the CrisisMMD test posts
  in a process of its own (start, imports, model load, reading, every post in the batches
  `crisislens triage` makes), timed whole like a triage turn, in the same alternated rounds.

Every child runs with Python's bytecode cache on (an installed package has one; a checkout whose
environment sets PYTHONDONTWRITEBYTECODE would compile the package on every start).
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from importlib.util import find_spec
from pathlib import Path
from typing import Any

MEMORY_POSTS = (1_000, 10_000, 100_000)
COLD_ROUNDS = 5
# The end-to-end peers, rows other stages register (`crisislens.bench`): the student in PyTorch
# eager and a transformers pipeline on MiniLM.
EAGER_ROW = "pytorch-eager-student"  # `crisislens bench --eager-model` sets this row's model
PEERS = (EAGER_ROW, "transformers-minilm-pipeline")

_WORDS = (
    "flood water rising bridge road closed rescue team shelter food donation power outage damage houses "
    "collapsed people trapped help needed volunteers supplies storm wind rain fire smoke evacuate hospital "
    "injured missing family safe news update tonight river city village boats medical aid relief camp"
).split()


def child_env() -> dict[str, str]:
    """The environment of every process the bench starts: this one's, with the bytecode cache on."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def available_peers() -> list[str]:
    """The peers to run: `PEERS` when PyTorch is installed and a stage registers bench rows (found
    without importing torch here; a peer that then fails to start is a failed turn)."""
    if find_spec("torch") is None or not list(entry_points(group="crisislens.bench")):
        return []
    return list(PEERS)


def synthetic_posts(path: Path, n: int, seed: int = 0) -> Path:
    """`n` text posts (6-24 words of a fixed crisis word list) as JSONL at `path`."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            text = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(6, 24)))
            f.write(json.dumps({"id": f"synthetic-{i}", "text": text}) + "\n")
    return path


Turn = Callable[[Sequence[str], Sequence[str], str, Path], dict[str, Any]]


def memory_scale(sizes: Sequence[int], bundle: str, workdir: Path, turn: Turn) -> dict[str, Any]:
    """Peak RSS of `crisislens triage` (defaults) on each number of synthetic posts in `sizes`."""
    turns = []
    for n in sizes:
        print(f"bench: memory: crisislens triage on {n} synthetic posts ...", file=sys.stderr, flush=True)
        posts = synthetic_posts(workdir / f"synthetic-{n}.jsonl", n)
        turns.append(turn([], [str(posts)], bundle, workdir / "bench-memory.sqlite"))
        posts.unlink()
    rss = [t.get("peak_rss_mb") if t.get("status") == "ok" else None for t in turns]
    seen = [r for r in rss if r is not None]
    return {
        "posts": list(sizes),
        "peak_rss_mb": rss,
        "posts_per_s": [t.get("posts_per_s") for t in turns],
        "stored": [t.get("posts") for t in turns],
        "growth": (max(seen) - min(seen)) / min(seen) if len(seen) > 1 else None,
        "load": [t.get("load") for t in turns],
        "errors": [t.get("error") for t in turns if t.get("status") != "ok"],
    }


def cold_start(bundle: str, workdir: Path, rounds: int, turn: Turn) -> dict[str, Any]:
    """Seconds of whole `crisislens triage` processes on one text post, `rounds` times after a
    warm-up turn (not counted)."""
    post = synthetic_posts(workdir / "one-post.jsonl", 1)
    turns = []
    for r in range(rounds + 1):
        print(f"bench: cold start {r}/{rounds} ...", file=sys.stderr, flush=True)
        turns.append(turn([], [str(post)], bundle, workdir / "bench-cold.sqlite"))
    seconds = [t["seconds"] if t.get("status") == "ok" else None for t in turns[1:]]
    seen = [s for s in seconds if s is not None]
    return {
        "seconds": seconds,
        "median": statistics.median(seen) if seen else None,
        "min": min(seen, default=None),
        "max": max(seen, default=None),
        "peak_rss_mb": statistics.median(t["peak_rss_mb"] for t in turns[1:] if t.get("status") == "ok")
        if seen
        else None,
        "load": [t.get("load") for t in turns[1:]],
        "errors": [t.get("error") for t in turns if t.get("status") != "ok"],
    }


def peer_turn(spec: dict[str, Any], load: Callable[[], float | None]) -> dict[str, Any]:
    """One peer end to end (`spec`: a bench-row spec with "end_to_end"), the whole process timed."""
    cmd = [sys.executable, "-m", "crisislens.runtime", "bench-row", json.dumps({**spec, "end_to_end": True})]
    load_before = load()
    t0 = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
    out, err = child.communicate()
    seconds = time.perf_counter() - t0
    loads = [load_before, load()]
    if child.returncode != 0:
        return {"status": "failed", "error": err.strip().splitlines()[-1:] or ["?"], "load": loads}
    n = int(json.loads(out.strip().splitlines()[-1])["posts"])
    return {"status": "ok", "seconds": seconds, "posts": n, "posts_per_s": n / seconds, "load": loads}


__all__ = [
    "COLD_ROUNDS",
    "EAGER_ROW",
    "MEMORY_POSTS",
    "PEERS",
    "available_peers",
    "child_env",
    "cold_start",
    "memory_scale",
    "peer_turn",
    "synthetic_posts",
]
