"""`crisislens bench`: one row per backend x precision, each measured in a fresh process.

Per row: file size, Macro-F1 on CrisisMMD test, label agreement with the ONNX FP32 row, batch-1
latency (p50/p90/p99) for text-only and text+image posts, batch-32 throughput, peak RSS and cold
start (process start -> first prediction). Every timing is end-to-end from the post on disk:
JPEG decode, tokenisation, model, post-processing.

Built to hold on a shared machine:
- every row, ours and the peers, runs at the same thread setting (`--threads`, default 1);
- every row is measured in each of several rounds, the order reversed every other round, a
  fresh process per turn (`bench_rounds`): rows timed seconds apart, so a slow spell falls on
  neighbours alike; a row's figures are medians over rounds, and a ratio is the median of the
  ratios within rounds, reported with its spread (min-max);
- the machine's load average is recorded before and after every turn, and the report warns when
  it moved during the run;
- `crisislens triage` itself is timed end to end, whole processes, its defaults against a
  baseline setting in the same alternated rounds (`triage_rounds`), optionally beside a competing
  busy process; the end-to-end peers (the student in PyTorch eager, a transformers pipeline) run
  whole in the same rounds, on as many threads as the triage defaults use in all;
- `crisislens triage`'s cold start on one post and its peak RSS from 1k to 100k posts are measured
  as whole processes too (`bench_scale`).
(Timing rows in one process instead is unfair: ONNX Runtime's spinning threads slow a PyTorch
peer down.)

Rows come from *runners*. The runtime brings the ONNX Runtime rows (no torch). Other stages add
rows through the `crisislens.bench` entry-point group (the PyTorch teacher/student and the
"peer" from their checkpoints, and the end-to-end peers, which are not rows); `--runtime-only`
skips the PyTorch rows, and this module never imports torch (the end-to-end peers, when PyTorch
is installed, run in processes of their own).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

from crisislens.evaluation.bench_scale import (
    COLD_ROUNDS,
    MEMORY_POSTS,
    PEERS,
    available_peers,
    child_env,
    cold_start,
    memory_scale,
    peer_turn,
)
from crisislens.evaluation.metrics.classification import classification_report
from crisislens.runtime.labels import LABEL_NAMES
from crisislens.runtime.schema import Post

PEER_ROW = "peer-transformers-eager"  # the row the speed-ups are measured against


class Runner(Protocol):
    name: str
    backend: str
    precision: str
    size_mb: float

    def predict(self, posts: Sequence[Post]) -> list[str]: ...


@dataclass
class Latency:
    """Milliseconds over `count` timed runs (warm-up excluded)."""

    count: int
    mean: float
    p50: float
    p90: float
    p95: float
    p99: float
    stdev: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Latency:
        if not seconds:
            raise ValueError("no timings")
        ms = sorted(s * 1000 for s in seconds)

        def pct(q: float) -> float:
            k = (len(ms) - 1) * q
            lo, hi = int(k), min(int(k) + 1, len(ms) - 1)
            return ms[lo] + (ms[hi] - ms[lo]) * (k - lo)

        return cls(
            len(ms),
            statistics.fmean(ms),
            pct(0.5),
            pct(0.9),
            pct(0.95),
            pct(0.99),
            statistics.stdev(ms) if len(ms) > 1 else 0.0,
        )


class OnnxRunner:
    """A bundle variant through the runtime engine (what `crisislens triage` runs)."""

    backend = "onnxruntime"

    def __init__(self, bundle_dir: Path, variant: str, threads: int | None = None):
        from crisislens.runtime.bundle import load_bundle
        from crisislens.runtime.engine import Engine

        bundle = load_bundle(bundle_dir)
        self.engine = Engine(bundle, variant, threads=threads)
        v = self.engine.variant
        # The row says what actually ran: a bundle with a matching engine runs on native TensorRT.
        self.backend = self.engine.backend.name
        self.name = f"{'trt' if self.backend == 'tensorrt' else 'ort'}-{v.name}"
        self.precision = v.precision
        self.size_mb = v.path.stat().st_size / 2**20
        self.providers = list(getattr(self.engine.backend, "providers", []))

    def predict(self, posts: Sequence[Post]) -> list[str]:
        return [p.label for p in self.engine.predict(posts)]


def plugin_runners(with_peers: bool = False) -> dict[str, Callable[..., Runner]]:
    """Row factories other stages register under the `crisislens.bench` entry-point group; the
    end-to-end peers (`bench_scale.PEERS`) only `with_peers`: they run whole, in the triage rounds,
    not as rows."""
    found: dict[str, Callable[..., Runner]] = {}
    for ep in entry_points(group="crisislens.bench"):
        try:
            found.update(ep.load()())
        except ImportError as exc:  # e.g. torch not installed: those rows are simply absent
            print(f"bench: rows of '{ep.name}' unavailable: {exc}", file=sys.stderr)
    return found if with_peers else {k: v for k, v in found.items() if k not in PEERS}


def measure(
    runner: Runner,
    test: Sequence[Post],
    text_posts: Sequence[Post],
    image_posts: Sequence[Post],
    *,
    spawned_at: float | None,
    single: int,
    warmup: int,
    batch: int,
    throughput_posts: int,
) -> dict[str, Any]:
    runner.predict(list(test[:1]))
    cold = (time.time() - spawned_at) if spawned_at else None  # new process -> first prediction
    labels: list[str] = []
    for b in range(0, len(test), batch):
        labels.extend(runner.predict(list(test[b : b + batch])))
    gold = [p.label for p in test]
    rep = classification_report(gold, labels, LABEL_NAMES)  # type: ignore[arg-type]

    def one_by_one(posts: Sequence[Post]) -> Latency:
        return batch1_latency(runner, posts, single=single, warmup=warmup)

    def throughput(posts: Sequence[Post]) -> float:
        pool = (list(posts) * (throughput_posts // max(len(posts), 1) + 1))[:throughput_posts]
        runner.predict(pool[:batch])  # warm-up at this batch size
        t0 = time.perf_counter()
        for b in range(0, len(pool), batch):
            runner.predict(pool[b : b + batch])
        return len(pool) / (time.perf_counter() - t0)

    return {
        "name": runner.name,
        "backend": runner.backend,
        "precision": runner.precision,
        "size_mb": round(runner.size_mb, 2),
        "providers": getattr(runner, "providers", None),
        "macro_f1": rep.macro_f1,
        "accuracy": rep.accuracy,
        "labels": labels,
        "latency_batch1_text_only": asdict(one_by_one(text_posts)),
        "latency_batch1_text_image": asdict(one_by_one(image_posts)),
        f"throughput_batch{batch}_text_only": throughput(text_posts),
        f"throughput_batch{batch}_text_image": throughput(image_posts),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "cold_start_s": cold,
    }


def load_test_posts(data_root: Path) -> tuple[list[Post], list[Post], list[Post]]:
    from crisislens.evaluation.datasets import dataset_inputs
    from crisislens.runtime.readers import read_posts

    inputs, image_root = dataset_inputs("crisismmd:test", data_root)
    posts = read_posts(inputs, image_root=image_root).posts
    return posts, [p for p in posts if p.image is None], [p for p in posts if p.image is not None]


def first_test_post(data_root: Path) -> Post:
    """The first CrisisMMD test post, read without reading the others."""
    from crisislens.evaluation.datasets import dataset_inputs
    from crisislens.runtime.readers import iter_posts

    inputs, image_root = dataset_inputs("crisismmd:test", data_root)
    return next(p for p in iter_posts(inputs, image_root=image_root) if isinstance(p, Post))


def make_runner(row: str, bundle: str, threads: int | None, options: dict[str, Any]) -> Runner:
    """The runner for bench row `row`: `ort-<variant>` of `bundle` (`<label>:ort-<variant>` of the
    bundle in `options["bundle"]`, a baseline), or a plugin row (with `options`). Every row gets the
    same `threads`: the peers too."""
    if row.partition(":")[2].startswith("ort-") or row.startswith("ort-"):
        variant = row.partition(":")[2][4:] if ":" in row else row[4:]
        runner = OnnxRunner(Path(options.get("bundle", bundle)), variant, threads)
        runner.name = row
        return runner
    factories = plugin_runners(with_peers=True)
    if row not in factories:
        raise ValueError(f"unknown bench row {row!r}; available: ort-<variant>, {', '.join(factories)}")
    return factories[row](**{"threads": threads, **options})


def batch1_latency(runner: Runner, posts: Sequence[Post], *, single: int, warmup: int) -> Latency:
    """Batch-1 latency of `runner` over the first `single` of `posts`, after `warmup` posts."""
    for p in posts[:warmup]:
        runner.predict([p])
    times = []
    for p in posts[:single]:
        t0 = time.perf_counter()
        runner.predict([p])
        times.append(time.perf_counter() - t0)
    return Latency.of(times)


def run_row(spec: dict[str, Any]) -> dict[str, Any]:
    """Child side: build the runner named in `spec` and measure it (with "latency_only", just its
    batch-1 text+image latency: one turn of the alternating speed-up rounds; with "end_to_end",
    just every test post, the process timed whole by the parent: a peer's end-to-end turn)."""
    runner = make_runner(spec["row"], spec["bundle"], spec.get("threads"), spec.get("options", {}))
    if spec.get("end_to_end"):  # a peer's whole run: its process is timed by the bench (bench_scale)
        from crisislens.runtime.store.run import bucketed

        posts = load_test_posts(Path(spec["data_root"]))[0]
        for batch in bucketed(posts, spec.get("batch", 32)):  # the batches crisislens triage makes
            runner.predict(batch)
        return {"name": spec["row"], "posts": len(posts)}
    # Cold start: process start -> the first test post predicted, before the rest is read.
    runner.predict([first_test_post(Path(spec["data_root"]))])
    cold = (time.time() - spec["spawned_at"]) if spec.get("spawned_at") else None
    test, text_posts, image_posts = load_test_posts(Path(spec["data_root"]))
    if spec.get("latency_only"):
        lat = batch1_latency(runner, image_posts, single=spec.get("single", 100), warmup=spec.get("warmup", 5))
        return {"name": spec["row"], "p50_ms": lat.p50, "posts": lat.count}
    measured = measure(
        runner,
        test,
        text_posts,
        image_posts,
        spawned_at=None,
        single=spec.get("single", 100),
        warmup=spec.get("warmup", 5),
        batch=spec.get("batch", 32),
        throughput_posts=spec.get("throughput_posts", 320),
    )
    return {**measured, "cold_start_s": cold}


def spawn_row(spec: dict[str, Any], timeout: float = 1800) -> dict[str, Any]:
    spec = {**spec, "spawned_at": time.time()}
    cmd = [sys.executable, "-m", "crisislens.runtime", "bench-row", json.dumps(spec)]
    load_before = load_average()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=child_env())
    load = [load_before, load_average()]
    if out.returncode != 0:
        error = out.stderr.strip().splitlines()[-1:] or ["?"]
        return {"name": spec["row"], "status": "failed", "error": error, "load": load}
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "status": "ok", "load": load}


def load_average() -> float | None:
    """The machine's 1-minute load average (None where the OS has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def load_moved(loads: Sequence[float | None], cores: int) -> bool:
    """Whether the load moved enough during a run to distort it: its range over the turns is more
    than a quarter of the cores (and at least 0.5): another process came or went."""
    seen = [x for x in loads if x is not None]
    return bool(seen) and max(seen) - min(seen) > max(0.5, cores / 4)


def spread(values: Sequence[float | None]) -> dict[str, Any] | None:
    """Median, min and max of the values that are there (None when none is)."""
    seen = [v for v in values if v is not None]
    if not seen:
        return None
    return {"median": statistics.median(seen), "min": min(seen), "max": max(seen), "n": len(seen)}


def _median_row(turns: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One row from its rounds: every number the median over the rounds that succeeded (latency
    statistics field by field); the labels, size and accuracy of the first such round."""
    ok = [t for t in turns if t.get("status") == "ok"]
    if not ok:
        return {**turns[0], "rounds": len(turns)}
    row = dict(ok[0])
    for key, value in ok[0].items():
        if isinstance(value, dict) and key.startswith("latency_"):
            row[key] = {k: statistics.median(t[key][k] for t in ok) for k in value}
        elif (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and key.startswith(("throughput_", "peak_rss", "cold_start"))
        ):
            row[key] = statistics.median(t[key] for t in ok if t.get(key) is not None)
    row["rounds"] = len(turns)
    row["rounds_ok"] = len(ok)
    row["per_round"] = {
        "p50_text_only_ms": [t["latency_batch1_text_only"]["p50"] if t in ok else None for t in turns],
        "p50_text_image_ms": [t["latency_batch1_text_image"]["p50"] if t in ok else None for t in turns],
    }
    row["load"] = [t.get("load") for t in turns]
    return row


def bench_rounds(
    rows: Sequence[str],
    base: dict[str, Any],
    options: dict[str, dict[str, Any]],
    *,
    rounds: int,
    spawn: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Every row measured whole in each of `rounds` rounds, the order reversed every other round,
    each turn a fresh process; one row per name back, its numbers the medians over rounds."""
    spawn = spawn or spawn_row
    turns: dict[str, list[dict[str, Any]]] = {row: [] for row in rows}
    for r in range(rounds):
        for row in rows if r % 2 == 0 else list(rows)[::-1]:
            print(f"bench: round {r + 1}/{rounds}: {row} ...", file=sys.stderr, flush=True)
            out = spawn({**base, "row": row, "options": options.get(row, {})})
            if out.get("status") != "ok":
                print(f"bench: {row}: FAILED {out.get('error')}", file=sys.stderr)
            turns[row].append(out)
    return [_median_row(turns[row]) for row in rows]


# -- crisislens triage, whole processes ----------------------------------------------------------

BUSY = "while True: pass"  # a competing process: one core kept busy


def triage_turn(args: Sequence[str], inputs: Sequence[str], bundle: str, store: Path) -> dict[str, Any]:
    """One `crisislens triage` of `inputs` into a new `store`, as a user runs it: wall time of the
    whole process (start, model load, reading, every post), posts/s, and its peak RSS."""
    import sqlite3

    for leftover in store.parent.glob(store.name + "*"):
        leftover.unlink()
    cmd = [sys.executable, "-m", "crisislens.runtime", "triage", *inputs, "--bundle", bundle, "--store", str(store)]
    load_before = load_average()
    t0 = time.perf_counter()
    child = subprocess.Popen(
        [*cmd, "--quiet", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=child_env()
    )
    assert child.stderr is not None
    err = child.stderr.read()  # --quiet: a few lines at most
    _, status, usage = os.wait4(child.pid, 0)  # its own peak RSS, not the bench's
    seconds = time.perf_counter() - t0
    child.returncode = os.waitstatus_to_exitcode(status)
    load = [load_before, load_average()]
    if child.returncode not in (0, 1):
        return {"status": "failed", "error": err.strip().splitlines()[-1:] or ["?"], "load": load}
    with sqlite3.connect(store) as db:
        n = db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]
    rss = usage.ru_maxrss / 1024
    return {
        "status": "ok",
        "seconds": seconds,
        "posts": n,
        "posts_per_s": n / seconds,
        "peak_rss_mb": rss,
        "load": load,
    }


def triage_rounds(
    settings: dict[str, list[str]],
    inputs: Sequence[str],
    bundle: str,
    workdir: Path,
    *,
    rounds: int,
    compete: int = 0,
    turn: Callable[..., dict[str, Any]] | None = None,
    peers: dict[str, dict[str, Any]] | None = None,
    peer: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """`crisislens triage` under each of `settings` ({name: extra arguments}) in `rounds` alternated
    rounds, beside `compete` busy processes; posts/s per round and each setting's ratio to the
    first setting (the baseline), round by round, with its spread. `peers` ({name: bench-row
    spec}) run end to end in the same rounds (`bench_scale.peer_turn`), and each setting but the
    baseline gets its ratio to each peer, round by round."""
    turn = turn or triage_turn
    peer = peer or (lambda spec: peer_turn(spec, load_average))
    peers = peers or {}
    names = [*settings, *peers]
    per: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    busy = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(compete)]
    try:
        for r in range(rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                print(f"bench: triage round {r + 1}/{rounds}: {name} ...", file=sys.stderr, flush=True)
                if name in peers:
                    per[name].append(peer(peers[name]))
                else:
                    per[name].append(turn(settings[name], inputs, bundle, workdir / "bench-triage.sqlite"))
    finally:
        for p in busy:
            p.kill()
            p.wait()
    rate = {n: [t["posts_per_s"] if t.get("status") == "ok" else None for t in per[n]] for n in names}
    base = names[0]

    def ratios(a: list[float | None], b: list[float | None]) -> dict[str, Any]:
        per_round = [x / y if x and y else None for x, y in zip(a, b)]
        return {"per_round": per_round, **(spread(per_round) or {})}

    mine = [n for n in settings if n != base]
    return {
        "settings": settings,
        "baseline": base,
        "rounds": rounds,
        "compete": compete,
        "posts_per_s": rate,
        "ratio_to_baseline": {n: ratios(rate[n], rate[base]) for n in mine},
        "peers": {n: {k: v for k, v in spec.items() if k in ("row", "threads")} for n, spec in peers.items()},
        "ratio_to_peers": {n: {p: ratios(rate[n], rate[p]) for p in peers} for n in mine},
        "load": {n: [t.get("load") for t in per[n]] for n in names},
        "errors": {n: [t.get("error") for t in per[n] if t.get("status") != "ok"] for n in names},
    }


def speed_rows(results: Sequence[dict[str, Any]]) -> list[str]:
    """The rows the speed-up target is about: the CPU INT8 ONNX Runtime rows (not the QDQ one)."""
    return [
        r["name"]
        for r in results
        if r.get("status") == "ok"
        and r["backend"] == "onnxruntime"
        and r["precision"] == "int8"
        and "qdq" not in r["name"]
    ]


def machine() -> dict[str, Any]:
    import onnxruntime as ort

    from crisislens.runtime.reports import environment

    env = environment()
    env.update(
        {
            "onnxruntime_providers": ort.get_available_providers(),
            "threads": os.cpu_count(),
            "machine": platform.machine(),
        }
    )
    return env


SPEED_ROUNDS = 3


def run_bench(
    bundle_dir: Path,
    data_root: Path,
    rows: Sequence[str],
    *,
    threads: int | None = 1,
    single: int = 100,
    batch: int = 32,
    throughput_posts: int = 320,
    options: dict[str, dict[str, Any]] | None = None,
    rounds: int = SPEED_ROUNDS,
    triage_settings: dict[str, list[str]] | None = None,
    compete: Sequence[int] = (),
    workdir: Path | None = None,
    peers: Sequence[str] | None = None,
    memory_posts: Sequence[int] = MEMORY_POSTS,
    cold_rounds: int = COLD_ROUNDS,
) -> dict[str, Any]:
    """Every row in `rounds` alternated rounds at `threads` threads each (peers too); then, with
    `triage_settings`, `crisislens triage` on the test posts under each setting, in alternated
    rounds, once per number of competing busy processes in `compete`, the end-to-end `peers`
    (default: `bench_scale.available_peers()`) in the first of them, each on as many threads as
    the triage defaults use in all (one per core); then `crisislens triage`'s cold start on one
    post (`cold_rounds` turns) and its peak RSS on each number of synthetic posts in `memory_posts`
    (`bench_scale`; 0 turns or no sizes: skipped)."""
    base = {
        "bundle": str(bundle_dir),
        "data_root": str(data_root),
        "threads": threads,
        "single": single,
        "batch": batch,
        "throughput_posts": throughput_posts,
    }
    results = bench_rounds(rows, base, options or {}, rounds=rounds)
    for r in results:
        if r["status"] == "ok":
            print(
                f"bench: {r['name']}: Macro-F1 {r['macro_f1']:.4f}, batch-1 text+image p50 "
                f"{r['latency_batch1_text_image']['p50']:.1f} ms (median of {r['rounds_ok']} rounds)",
                file=sys.stderr,
            )
    alternating = {
        "rounds": rounds,
        "p50_ms": {r["name"]: r.get("per_round", {}).get("p50_text_image_ms", [None] * rounds) for r in results},
        "p50_text_only_ms": {
            r["name"]: r.get("per_round", {}).get("p50_text_only_ms", [None] * rounds) for r in results
        },
    }
    ref = next((r for r in results if r.get("name") == "ort-fp32" and r["status"] == "ok"), None)
    for r in results:
        if r["status"] == "ok" and ref is not None:
            r["label_agreement_with_fp32"] = sum(a == b for a, b in zip(r["labels"], ref["labels"])) / len(
                ref["labels"]
            )
    for r in results:
        r.pop("labels", None)
    triage_runs = []
    if triage_settings:
        from crisislens.evaluation.datasets import dataset_inputs
        from crisislens.runtime.parallel import cores

        inputs, image_root = dataset_inputs("crisismmd:test", data_root)
        args = [*map(str, inputs), "--image-root", str(image_root)]
        peer_specs = {
            name: {
                **base,
                "row": name,
                "threads": cores(),
                "options": {**(options or {}).get(name, {}), "bundle": str(bundle_dir)},
            }
            for name in (available_peers() if peers is None else peers)
        }
        for i, n in enumerate(compete):
            with tempfile.TemporaryDirectory() as tmp:
                triage_runs.append(
                    triage_rounds(
                        triage_settings,
                        args,
                        str(bundle_dir),
                        Path(workdir or tmp),
                        rounds=rounds,
                        compete=n,
                        peers=peer_specs if i == 0 else None,
                    )
                )
    with tempfile.TemporaryDirectory() as tmp:
        cold = cold_start(str(bundle_dir), Path(tmp), cold_rounds, triage_turn) if cold_rounds > 0 else None
        memory = memory_scale(memory_posts, str(bundle_dir), Path(tmp), triage_turn) if memory_posts else None
    loads = [x for r in results for pair in r.get("load", []) if pair for x in pair]
    loads += [x for t in triage_runs for per in t["load"].values() for pair in per if pair for x in pair]
    loads += [x for part in (cold, memory) if part for pair in part["load"] if pair for x in pair if x is not None]
    env = machine()
    return {
        "rows": results,
        "machine": env,
        "threads": threads,
        "batch": batch,
        "single": single,
        "throughput_posts": throughput_posts,
        "alternating": alternating,
        "triage": triage_runs,
        "cold_start": cold,
        "memory": memory,
        "load": {**(spread(loads) or {}), "moved": load_moved(loads, int(env.get("cpu_count") or 1))},
    }
