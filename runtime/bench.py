"""`crisislens bench`: one row per backend x precision, each measured in a fresh process.

Per row: file size, Macro-F1 on CrisisMMD test, label agreement with the ONNX FP32 row, batch-1
latency (p50/p90/p99) for text-only and text+image posts, batch-32 throughput, peak RSS and cold
start (process start -> first prediction). Every timing is end-to-end from the post on disk:
JPEG decode, tokenisation, model, post-processing. The speed-up over the peer is timed again with
the CPU INT8 rows and the peer in one process, taking turns post by post (`interleaved_p50`): the
separate rows run minutes apart on a shared machine, so their ratio also carries its drift.

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

from crisislens.runtime.labels import LABEL_NAMES
from crisislens.runtime.metrics import classification_report
from crisislens.runtime.reports import targets_section
from crisislens.runtime.schema import Post


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

        return cls(len(ms), statistics.fmean(ms), pct(0.5), pct(0.9), pct(0.95), pct(0.99),
                   statistics.stdev(ms) if len(ms) > 1 else 0.0)


# ----------------------------------------------------------------------------- runners


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
        self.providers = list(self.engine.backend.providers)

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


# ----------------------------------------------------------------------------- one row (child process)


def measure(runner: Runner, test: Sequence[Post], text_posts: Sequence[Post], image_posts: Sequence[Post], *,
            spawned_at: float | None, single: int, warmup: int, batch: int, throughput_posts: int) -> dict[str, Any]:
    runner.predict(list(test[:1]))
    cold = (time.time() - spawned_at) if spawned_at else None  # new process -> first prediction
    labels: list[str] = []
    for b in range(0, len(test), batch):
        labels.extend(runner.predict(list(test[b : b + batch])))
    gold = [p.label for p in test]
    rep = classification_report(gold, labels, LABEL_NAMES)  # type: ignore[arg-type]

    def one_by_one(posts: Sequence[Post]) -> Latency:
        for p in posts[:warmup]:
            runner.predict([p])
        times = []
        for p in posts[:single]:
            t0 = time.perf_counter()
            runner.predict([p])
            times.append(time.perf_counter() - t0)
        return Latency.of(times)

    def throughput(posts: Sequence[Post]) -> float:
        pool = (list(posts) * (throughput_posts // max(len(posts), 1) + 1))[:throughput_posts]
        runner.predict(pool[:batch])  # warm-up at this batch size
        t0 = time.perf_counter()
        for b in range(0, len(pool), batch):
            runner.predict(pool[b : b + batch])
        return len(pool) / (time.perf_counter() - t0)

    return {
        "name": runner.name, "backend": runner.backend, "precision": runner.precision,
        "size_mb": round(runner.size_mb, 2), "providers": getattr(runner, "providers", None),
        "macro_f1": rep.macro_f1, "accuracy": rep.accuracy, "labels": labels,
        "latency_batch1_text_only": asdict(one_by_one(text_posts)),
        "latency_batch1_text_image": asdict(one_by_one(image_posts)),
        f"throughput_batch{batch}_text_only": throughput(text_posts),
        f"throughput_batch{batch}_text_image": throughput(image_posts),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "cold_start_s": cold,
    }


def load_test_posts(data_root: Path) -> tuple[list[Post], list[Post], list[Post]]:
    from crisislens.runtime.evaluate import dataset_inputs
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


def interleaved_p50(runners: dict[str, Runner], posts: Sequence[Post], *, warmup: int = 5, rounds: int = 3,
                    clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Median ms per post of each runner over the same posts at batch 1, the runners taking turns
    post by post (the order reversed every other post and round), so a slow spell of a shared
    machine slows them alike and the ratio of their medians stays fair."""
    names = list(runners)
    for p in posts[:warmup]:
        for n in names:
            runners[n].predict([p])
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for i, p in enumerate(posts):
            for n in (names if (i + r) % 2 == 0 else names[::-1]):
                t0 = clock()
                runners[n].predict([p])
                times[n].append((clock() - t0) * 1000)
    return {n: statistics.median(t) for n, t in times.items()}


def run_row(spec: dict[str, Any]) -> dict[str, Any]:
    """Child side: build the runner named in `spec` and measure it; or, for a spec with
    "interleave" (a list of rows), time those rows against each other in this one process."""
    test, text_posts, image_posts = load_test_posts(Path(spec["data_root"]))
    if "interleave" in spec:
        runners = {row: make_runner(row, spec["bundle"], spec.get("threads"), spec.get("options", {}).get(row, {}))
                   for row in spec["interleave"]}
        posts = image_posts[: spec.get("single", 100)]
        rounds = spec.get("rounds", 3)
        return {"p50_ms": interleaved_p50(runners, posts, warmup=spec.get("warmup", 5), rounds=rounds),
                "posts": len(posts), "rounds": rounds}
    runner = make_runner(spec["row"], spec["bundle"], spec.get("threads"), spec.get("options", {}))
    return measure(runner, test, text_posts, image_posts, spawned_at=spec.get("spawned_at"),
                   single=spec.get("single", 100), warmup=spec.get("warmup", 5), batch=spec.get("batch", 32),
                   throughput_posts=spec.get("throughput_posts", 320))


# ----------------------------------------------------------------------------- all rows (parent)


def spawn_row(spec: dict[str, Any], timeout: float = 1800) -> dict[str, Any]:
    spec = {**spec, "spawned_at": time.time()}
    cmd = [sys.executable, "-m", "crisislens.runtime", "bench-row", json.dumps(spec)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        name = spec.get("row") or "interleaved: " + ", ".join(spec.get("interleave", []))
        return {"name": name, "status": "failed", "error": out.stderr.strip().splitlines()[-1:] or ["?"]}
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "status": "ok"}


def speed_rows(results: Sequence[dict[str, Any]]) -> list[str]:
    """The rows the speed-up target is about: the CPU INT8 ONNX Runtime rows (not the QDQ one)."""
    return [r["name"] for r in results if r.get("status") == "ok" and r["backend"] == "onnxruntime"
            and r["precision"] == "int8" and "qdq" not in r["name"]]


def machine() -> dict[str, Any]:
    import onnxruntime as ort

    from crisislens.runtime.reports import environment

    env = environment()
    env.update({"onnxruntime_providers": ort.get_available_providers(), "threads": os.cpu_count(),
                "machine": platform.machine()})
    return env


def run_bench(bundle_dir: Path, data_root: Path, rows: Sequence[str], *, threads: int | None = None,
              single: int = 100, batch: int = 32, throughput_posts: int = 320,
              options: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    results = []
    for row in rows:
        print(f"bench: {row} ...", file=sys.stderr, flush=True)
        spec = {"row": row, "bundle": str(bundle_dir), "data_root": str(data_root), "threads": threads,
                "single": single, "batch": batch, "throughput_posts": throughput_posts,
                "options": (options or {}).get(row, {})}
        r = spawn_row(spec)
        results.append(r)
        if r["status"] == "ok":
            print(f"bench: {row}: Macro-F1 {r['macro_f1']:.4f}, batch-1 text+image p50 "
                  f"{r['latency_batch1_text_image']['p50']:.1f} ms", file=sys.stderr)
        else:
            print(f"bench: {row}: FAILED {r['error']}", file=sys.stderr)
    peer = next((r for r in results if r.get("name") == PEER_ROW and r["status"] == "ok"), None)
    interleaved = None
    if peer is not None and speed_rows(results):
        compared = [*speed_rows(results), PEER_ROW]
        print(f"bench: interleaved {', '.join(compared)} ...", file=sys.stderr, flush=True)
        interleaved = spawn_row({"interleave": compared, "bundle": str(bundle_dir), "data_root": str(data_root),
                                 "threads": threads, "single": single, "options": options or {}})
    ref = next((r for r in results if r.get("name") == "ort-fp32" and r["status"] == "ok"), None)
    for r in results:
        if r["status"] == "ok" and ref is not None:
            r["label_agreement_with_fp32"] = sum(a == b for a, b in zip(r["labels"], ref["labels"])) / len(ref["labels"])
    for r in results:
        r.pop("labels", None)
    return {"rows": results, "machine": machine(), "batch": batch, "single": single,
            "throughput_posts": throughput_posts, "interleaved": interleaved}


# ----------------------------------------------------------------------------- report


TARGETS = {"int8_vs_peer_speedup": 3.0, "p50_text_image_ms": 30.0, "throughput_text_only": 150.0,
           "throughput_text_image": 40.0, "peak_rss_mb": 400.0, "cold_start_s": 2.0}


PEER_ROW = "peer-transformers-eager"


def speedups(result: dict[str, Any], peer_row: str = PEER_ROW) -> dict[str, dict[str, float | None]]:
    """Per CPU INT8 row, the peer's batch-1 text+image p50 over the row's: `interleaved` from the
    run that times them against each other in one process (None without it), `separate` from
    their own rows, each run in its own process at its own time."""
    rows = {r["name"]: r for r in result["rows"] if r.get("status") == "ok"}
    peer = rows.get(peer_row)
    both = result.get("interleaved") or {}
    p50 = both.get("p50_ms", {}) if both.get("status") == "ok" else {}
    out: dict[str, dict[str, float | None]] = {}
    for name in speed_rows(result["rows"]):
        if peer is None:
            continue
        separate = peer["latency_batch1_text_image"]["p50"] / rows[name]["latency_batch1_text_image"]["p50"]
        together = p50[peer_row] / p50[name] if name in p50 and peer_row in p50 else None
        out[name] = {"interleaved": together, "separate": separate}
    return out


def targets(result: dict[str, Any], peer_row: str = PEER_ROW) -> list[dict[str, Any]]:
    """The issue's targets, for every dynamic-INT8 ONNX Runtime row (the CPU variants). The
    speed-up is judged on the interleaved run where there is one (both timed under the same load)."""
    rows = {r["name"]: r for r in result["rows"] if r.get("status") == "ok"}
    int8_rows = [rows[n] for n in speed_rows(result["rows"])]
    b = result["batch"]
    peer = rows.get(peer_row)
    ratios = speedups(result, peer_row)
    out: list[dict[str, Any]] = []

    def add(target: str, measured: float | None, ok: bool | None, fmt: str = "{:.2f}") -> None:
        out.append({"target": target, "measured": None if measured is None else fmt.format(measured), "met": ok})

    if not int8_rows:
        add("ORT INT8 rows", None, None)
    for i8 in int8_rows:
        n = i8["name"]
        if peer:
            r = ratios[n]
            speed = r["interleaved"] if r["interleaved"] is not None else r["separate"]
            how = (f"{{:.2f}}x interleaved ({r['separate']:.2f}x from the separate rows)"
                   if r["interleaved"] is not None else "{:.2f}x")
            add(f"{n} >= 3x faster than the PyTorch-eager peer (batch 1, text+image, p50)", speed,
                speed >= TARGETS["int8_vs_peer_speedup"], how)
        p50 = i8["latency_batch1_text_image"]["p50"]
        add(f"{n} p50 batch-1 text+image <= 30 ms", p50, p50 <= TARGETS["p50_text_image_ms"], "{:.1f} ms")
        t = i8[f"throughput_batch{b}_text_only"]
        add(f"{n} throughput text-only >= 150 posts/s", t, t >= TARGETS["throughput_text_only"], "{:.1f} posts/s")
        t = i8[f"throughput_batch{b}_text_image"]
        add(f"{n} throughput with images >= 40 posts/s", t, t >= TARGETS["throughput_text_image"], "{:.1f} posts/s")
        add(f"{n} peak RSS <= 400 MB", i8["peak_rss_mb"], i8["peak_rss_mb"] <= TARGETS["peak_rss_mb"], "{:.0f} MB")
        add(f"{n} cold start (new process -> first prediction) <= 2 s", i8["cold_start_s"],
            i8["cold_start_s"] is not None and i8["cold_start_s"] <= TARGETS["cold_start_s"], "{:.2f} s")
    return out


def to_markdown(result: dict[str, Any], provenance: dict[str, Any]) -> str:
    m, b = result["machine"], result["batch"]
    lines = ["# Benchmark: backends x precisions on this machine", "",
             f"Command: `{provenance['command']}` · commit {provenance['git_commit']} · {provenance['created']}.",
             f"Machine: {m['cpu']} ({m['cpu_count']} cores, {m['machine']}), Python {m['python']}; "
             f"ONNX Runtime providers available: {', '.join(m['onnxruntime_providers'])}.",
             "Every row runs in a fresh process; timings are end-to-end from the post on disk (JPEG decode, "
             f"tokenisation, model, post-processing); batch-1 latency over {result['single']} posts after warm-up; "
             f"throughput at batch {b} over {result['throughput_posts']} posts.", "",
             f"| row | backend | precision | size MB | Macro-F1 (test) | agreement with FP32 | batch-1 text-only p50 / p90 / p99 ms | "
             f"batch-1 text+image p50 / p90 / p99 ms | batch-{b} text-only posts/s | batch-{b} text+image posts/s | peak RSS MB | cold start s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        if r.get("status") != "ok":
            lines.append(f"| {r['name']} | failed: {r.get('error')} |" + " |" * 10)
            continue
        lt, li = r["latency_batch1_text_only"], r["latency_batch1_text_image"]
        agree = r.get("label_agreement_with_fp32")
        cold = "–" if r["cold_start_s"] is None else f"{r['cold_start_s']:.2f}"
        lines.append(
            f"| {r['name']} | {r['backend']} | {r['precision']} | {r['size_mb']:.1f} | {r['macro_f1']:.4f} | "
            f"{'–' if agree is None else f'{agree * 100:.1f}%'} | {lt['p50']:.1f} / {lt['p90']:.1f} / {lt['p99']:.1f} | "
            f"{li['p50']:.1f} / {li['p90']:.1f} / {li['p99']:.1f} | {r[f'throughput_batch{b}_text_only']:.1f} | "
            f"{r[f'throughput_batch{b}_text_image']:.1f} | {r['peak_rss_mb']:.0f} | "
            f"{cold} |")
    both = result.get("interleaved")
    if both:
        lines += ["", "## Speed-up over the peer, timed together", ""]
        if both.get("status") == "ok":
            p50 = both["p50_ms"]
            lines += [f"The CPU INT8 rows and the peer again, in one process, taking turns post by post (order "
                      f"reversed every other post) over the same {both['posts']} text+image posts, {both['rounds']} "
                      "rounds, batch 1, end to end: a slow spell of this shared machine slows them alike. The "
                      "separate rows above run minutes apart, so their ratio also carries the machine's drift.", "",
                      "| row | p50 ms, timed together | peer p50 ms, timed together | speed-up, together | "
                      "speed-up, separate rows |", "|---|---|---|---|---|"]
            for name, r in speedups(result).items():
                if r["interleaved"] is not None:
                    lines.append(f"| {name} | {p50[name]:.1f} | {p50[PEER_ROW]:.1f} | {r['interleaved']:.2f}x | "
                                 f"{r['separate']:.2f}x |")
        else:
            lines.append(f"The interleaved run failed: {both.get('error')}")
    lines += targets_section("runtime", targets(result))
    return "\n".join(lines)


def chart(result: dict[str, Any], path: Path) -> Path:
    """Bar chart (Pillow only) of batch-1 text+image p50 latency per row."""
    from PIL import Image, ImageDraw

    rows = [r for r in result["rows"] if r.get("status") == "ok"]
    w, row_h, left = 900, 34, 230
    img = Image.new("RGB", (w, 60 + row_h * max(len(rows), 1)), "white")
    d = ImageDraw.Draw(img)
    d.text((10, 10), "batch-1 latency, text+image post, p50 (ms, lower is better)", fill="black")
    top = max((r["latency_batch1_text_image"]["p50"] for r in rows), default=1.0)
    for i, r in enumerate(rows):
        y = 40 + i * row_h
        v = r["latency_batch1_text_image"]["p50"]
        d.text((10, y + 8), r["name"], fill="black")
        d.rectangle([left, y + 4, left + int((w - left - 90) * v / top), y + row_h - 8],
                    fill=(40, 110, 200) if r["backend"] == "onnxruntime" else (200, 120, 40))
        d.text((left + int((w - left - 90) * v / top) + 6, y + 8), f"{v:.1f}", fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path
