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
        return batch1_latency(runner, posts, single=single, warmup=warmup)

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
    return measure(runner, test, text_posts, image_posts, spawned_at=spec.get("spawned_at"),
                   single=spec.get("single", 100), warmup=spec.get("warmup", 5), batch=spec.get("batch", 32),
                   throughput_posts=spec.get("throughput_posts", 320))


# ----------------------------------------------------------------------------- all rows (parent)


def spawn_row(spec: dict[str, Any], timeout: float = 1800) -> dict[str, Any]:
    spec = {**spec, "spawned_at": time.time()}
    cmd = [sys.executable, "-m", "crisislens.runtime", "bench-row", json.dumps(spec)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        return {"name": spec["row"], "status": "failed", "error": out.stderr.strip().splitlines()[-1:] or ["?"]}
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


SPEED_ROUNDS = 3


def alternating_rounds(rows: Sequence[str], base: dict[str, Any], options: dict[str, dict[str, Any]], *,
                       rounds: int = SPEED_ROUNDS, spawn: Callable[[dict[str, Any]], dict[str, Any]] | None = None
                       ) -> dict[str, Any]:
    """Batch-1 text+image p50 of each of `rows` in `rounds` rounds, every turn a fresh process
    (no threads shared between rows), the order reversed every other round: rows timed seconds
    apart instead of minutes, so a slow spell of a shared machine falls on neighbours alike."""
    spawn = spawn or spawn_row
    p50: dict[str, list[float | None]] = {row: [] for row in rows}
    for r in range(rounds):
        for row in (rows if r % 2 == 0 else list(rows)[::-1]):
            print(f"bench: speed-up round {r + 1}/{rounds}: {row} ...", file=sys.stderr, flush=True)
            out = spawn({**base, "row": row, "latency_only": True, "options": options.get(row, {})})
            p50[row].append(out["p50_ms"] if out.get("status") == "ok" else None)
    return {"rounds": rounds, "p50_ms": p50}


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
    alternating = None
    if peer is not None and speed_rows(results):
        alternating = alternating_rounds([*speed_rows(results), PEER_ROW], {
            "bundle": str(bundle_dir), "data_root": str(data_root), "threads": threads, "single": single}, options or {})
    ref = next((r for r in results if r.get("name") == "ort-fp32" and r["status"] == "ok"), None)
    for r in results:
        if r["status"] == "ok" and ref is not None:
            r["label_agreement_with_fp32"] = sum(a == b for a, b in zip(r["labels"], ref["labels"])) / len(ref["labels"])
    for r in results:
        r.pop("labels", None)
    return {"rows": results, "machine": machine(), "batch": batch, "single": single,
            "throughput_posts": throughput_posts, "alternating": alternating}


# ----------------------------------------------------------------------------- report


TARGETS = {"int8_vs_peer_speedup": 3.0, "p50_text_image_ms": 30.0, "throughput_text_only": 150.0,
           "throughput_text_image": 40.0, "peak_rss_mb": 400.0, "cold_start_s": 2.0}


PEER_ROW = "peer-transformers-eager"


def speedups(result: dict[str, Any], peer_row: str = PEER_ROW) -> dict[str, dict[str, Any]]:
    """Per CPU INT8 row, the peer's batch-1 text+image p50 over the row's: `alternating`, the
    median over the alternating rounds of the ratio within each round (None without them), and
    `separate`, from the rows' own runs minutes apart."""
    rows = {r["name"]: r for r in result["rows"] if r.get("status") == "ok"}
    peer = rows.get(peer_row)
    rounds = (result.get("alternating") or {}).get("p50_ms", {})
    out: dict[str, dict[str, Any]] = {}
    for name in speed_rows(result["rows"]):
        if peer is None:
            continue
        separate = peer["latency_batch1_text_image"]["p50"] / rows[name]["latency_batch1_text_image"]["p50"]
        pairs = [p / m for p, m in zip(rounds.get(peer_row, []), rounds.get(name, [])) if p and m]
        out[name] = {"alternating": statistics.median(pairs) if pairs else None, "per_round": pairs,
                     "separate": separate}
    return out


def targets(result: dict[str, Any], peer_row: str = PEER_ROW) -> list[dict[str, Any]]:
    """The issue's targets, for every dynamic-INT8 ONNX Runtime row (the CPU variants). The
    speed-up is judged on the alternating rounds where there are some (rows timed seconds apart)."""
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
            speed = r["alternating"] if r["alternating"] is not None else r["separate"]
            how = (f"{{:.2f}}x over alternating rounds ({r['separate']:.2f}x from the separate rows)"
                   if r["alternating"] is not None else "{:.2f}x")
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
    alt = result.get("alternating")
    if alt:
        lines += ["", "## Speed-up over the peer, alternating rounds", "",
                  f"The CPU INT8 rows and the peer once more, batch-1 text+image latency only, in {alt['rounds']} "
                  "rounds (order reversed every other round), every turn a fresh process: rows timed seconds "
                  "apart, where the rows above run minutes apart and their ratio also carries the shared "
                  "machine's drift. The speed-up is the median over rounds of the ratio within a round.", "",
                  "| row | p50 ms per round | peer p50 ms per round | speed-up per round | speed-up (median) | "
                  "speed-up, separate rows |", "|---|---|---|---|---|---|"]

        def ms(values: list[float | None]) -> str:
            return " / ".join("–" if v is None else f"{v:.1f}" for v in values)

        for name, r in speedups(result).items():
            med = "–" if r["alternating"] is None else f"{r['alternating']:.2f}x"
            lines.append(f"| {name} | {ms(alt['p50_ms'].get(name, []))} | {ms(alt['p50_ms'].get(PEER_ROW, []))} | "
                         f"{' / '.join(f'{x:.2f}x' for x in r['per_round']) or '–'} | {med} | {r['separate']:.2f}x |")
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
