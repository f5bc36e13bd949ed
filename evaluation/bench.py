"""`crisislens bench`: one row per backend x precision, each measured in a fresh process.

Per row: file size, Macro-F1 on CrisisMMD test, label agreement with the ONNX FP32 row, batch-1
latency (p50/p90/p99) for text-only and text+image posts, batch-32 throughput, peak RSS and cold
start (process start -> first prediction). Every timing is end-to-end from the post on disk:
JPEG decode, tokenisation, model, post-processing. The speed-up over the peer is timed again in
alternating rounds (`alternating_rounds`: batch-1 latency only, a fresh process per turn, the
order reversed every round): the separate rows run minutes apart on a shared machine, so their
ratio also carries its drift. (Timing them in one process instead is unfair: ONNX Runtime's
spinning threads slow the PyTorch peer down.)

Rows come from *runners*. The runtime brings the ONNX Runtime rows (no torch). Other stages add
rows through the `crisislens.bench` entry-point group (the PyTorch teacher/student and the
"peer": the student run the way a user without CrisisLens would, transformers + PyTorch eager,
one post at a time); `--runtime-only` skips them, and this module never imports torch.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

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


def plugin_runners() -> dict[str, Callable[..., Runner]]:
    """Row factories other stages register under the `crisislens.bench` entry-point group."""
    found: dict[str, Callable[..., Runner]] = {}
    for ep in entry_points(group="crisislens.bench"):
        try:
            found.update(ep.load()())
        except ImportError as exc:  # e.g. torch not installed: those rows are simply absent
            print(f"bench: rows of '{ep.name}' unavailable: {exc}", file=sys.stderr)
    return found


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


def make_runner(row: str, bundle: str, threads: int | None, options: dict[str, Any]) -> Runner:
    """The runner for bench row `row`: `ort-<variant>` of `bundle`, or a plugin row (with `options`)."""
    if row.startswith("ort-"):
        return OnnxRunner(Path(bundle), row[4:], threads)
    factories = plugin_runners()
    if row not in factories:
        raise ValueError(f"unknown bench row {row!r}; available: ort-<variant>, {', '.join(factories)}")
    return factories[row](**options)


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
    batch-1 text+image latency: one turn of the alternating speed-up rounds)."""
    runner = make_runner(spec["row"], spec["bundle"], spec.get("threads"), spec.get("options", {}))
    test, text_posts, image_posts = load_test_posts(Path(spec["data_root"]))
    if spec.get("latency_only"):
        lat = batch1_latency(runner, image_posts, single=spec.get("single", 100), warmup=spec.get("warmup", 5))
        return {"name": spec["row"], "p50_ms": lat.p50, "posts": lat.count}
    return measure(
        runner,
        test,
        text_posts,
        image_posts,
        spawned_at=spec.get("spawned_at"),
        single=spec.get("single", 100),
        warmup=spec.get("warmup", 5),
        batch=spec.get("batch", 32),
        throughput_posts=spec.get("throughput_posts", 320),
    )


def spawn_row(spec: dict[str, Any], timeout: float = 1800) -> dict[str, Any]:
    spec = {**spec, "spawned_at": time.time()}
    cmd = [sys.executable, "-m", "crisislens.runtime", "bench-row", json.dumps(spec)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        return {"name": spec["row"], "status": "failed", "error": out.stderr.strip().splitlines()[-1:] or ["?"]}
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "status": "ok"}


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


def alternating_rounds(
    rows: Sequence[str],
    base: dict[str, Any],
    options: dict[str, dict[str, Any]],
    *,
    rounds: int = SPEED_ROUNDS,
    spawn: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Batch-1 text+image p50 of each of `rows` in `rounds` rounds, every turn a fresh process
    (no threads shared between rows), the order reversed every other round: rows timed seconds
    apart instead of minutes, so a slow spell of a shared machine falls on neighbours alike."""
    spawn = spawn or spawn_row
    p50: dict[str, list[float | None]] = {row: [] for row in rows}
    for r in range(rounds):
        for row in rows if r % 2 == 0 else list(rows)[::-1]:
            print(f"bench: speed-up round {r + 1}/{rounds}: {row} ...", file=sys.stderr, flush=True)
            out = spawn({**base, "row": row, "latency_only": True, "options": options.get(row, {})})
            p50[row].append(out["p50_ms"] if out.get("status") == "ok" else None)
    return {"rounds": rounds, "p50_ms": p50}


def run_bench(
    bundle_dir: Path,
    data_root: Path,
    rows: Sequence[str],
    *,
    threads: int | None = None,
    single: int = 100,
    batch: int = 32,
    throughput_posts: int = 320,
    options: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    results = []
    for row in rows:
        print(f"bench: {row} ...", file=sys.stderr, flush=True)
        spec = {
            "row": row,
            "bundle": str(bundle_dir),
            "data_root": str(data_root),
            "threads": threads,
            "single": single,
            "batch": batch,
            "throughput_posts": throughput_posts,
            "options": (options or {}).get(row, {}),
        }
        r = spawn_row(spec)
        results.append(r)
        if r["status"] == "ok":
            print(
                f"bench: {row}: Macro-F1 {r['macro_f1']:.4f}, batch-1 text+image p50 "
                f"{r['latency_batch1_text_image']['p50']:.1f} ms",
                file=sys.stderr,
            )
        else:
            print(f"bench: {row}: FAILED {r['error']}", file=sys.stderr)
    peer = next((r for r in results if r.get("name") == PEER_ROW and r["status"] == "ok"), None)
    alternating = None
    if peer is not None and speed_rows(results):
        alternating = alternating_rounds(
            [*speed_rows(results), PEER_ROW],
            {"bundle": str(bundle_dir), "data_root": str(data_root), "threads": threads, "single": single},
            options or {},
        )
    ref = next((r for r in results if r.get("name") == "ort-fp32" and r["status"] == "ok"), None)
    for r in results:
        if r["status"] == "ok" and ref is not None:
            r["label_agreement_with_fp32"] = sum(a == b for a, b in zip(r["labels"], ref["labels"])) / len(
                ref["labels"]
            )
    for r in results:
        r.pop("labels", None)
    return {
        "rows": results,
        "machine": machine(),
        "batch": batch,
        "single": single,
        "throughput_posts": throughput_posts,
        "alternating": alternating,
    }
