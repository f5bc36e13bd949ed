"""`crisislens cluster bench`: the cluster path against plain `crisislens triage`, on this machine.

Both commands run end to end as a user runs them (a fresh process each, the model loaded), on the
same synthetic posts. The cluster runs join a Ray head node the bench starts once on 127.0.0.1
before the timed runs (`ray start --head`), as a team joins the cluster it already runs; how long
that start took is measured and reported beside it, with the overhead a run that starts its own
local instance would show (`--own-instance` times that instead: each cluster run starts and
stops a local instance). The posts: text
posts (generated from a word list: no real post is used) and posts with a photo (the 30
photos of `samples/images`, in turn). For each number of workers, plain `triage --workers N
--threads 1` and `triage --engine ray --workers N --threads 1` run one after the other, the
order alternated between sizes so that neither always meets a warmer or quieter machine.

Per run: wall time and posts/s (posts / wall time: start-up included), peak memory (the plain
run's process; each Ray actor's own peak, from the run log), the machine's load average and how
busy its cores were (from /proc/stat, every process counted: the other work on the machine
shows there). Per pair: the overhead of the cluster path (1 - its posts/s / plain posts/s) and
whether both gave the same answers: same posts, labels, probabilities, rationale scores and
patch grids (largest difference of each).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from crisislens.cluster.run import RUNS_LOG
from crisislens.cluster.shards import PREDICTIONS, iter_rows, shard_files
from crisislens.runtime.errors import CrisisLensError
from crisislens.runtime.markdown import md_table
from crisislens.runtime.reports import provenance, write_report
from crisislens.runtime.settings import DEFAULT_BUNDLE
from crisislens.runtime.store import TriageStore

REPORT = "cluster_bench"
SAMPLE_PHOTOS = DEFAULT_BUNDLE.parents[1] / "samples" / "images"  # the checkout's 30 sample photos
# Words of crisis posts, none taken from a real post: the text posts are drawn from these.
WORDS = (
    "flood water rising bridge road closed rescue team boat family trapped roof shelter food donate help "
    "volunteers power out damage houses collapsed injured missing hospital medical supplies storm wind rain "
    "evacuate school tents clean drinking river village landslide fire smoke crews army relief camp blankets "
    "children elderly stranded cut off phone network down please share urgent need update tonight morning"
).split()


@dataclass
class BenchConfig:
    posts: int
    photo_posts: int
    workers: list[int]
    bundle: Path
    work: Path
    reports: Path
    own_instance: bool = False  # each cluster run starts its own local Ray instance (no shared head)
    update: bool = False  # keep the report's other rows: replace only the rows this run measures


RAY_ENV = {"RAY_AUTH_MODE": "disabled"}  # a loopback head for the bench alone


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_head(work: Path, cpus: int) -> Iterator[tuple[str, float]]:
    """A Ray head node on 127.0.0.1 for the bench's cluster runs: (its address, seconds it took to
    come up). Stopped afterwards with everything it started (its own process group)."""
    import signal

    ray = Path(sys.executable).parent / "ray"
    if not ray.is_file():
        raise CrisisLensError(f"{ray}: no `ray` command beside this Python (pip install 'crisislens[cluster]')")
    port = _free_port()
    log_path = work / "head.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with log_path.open("w") as log:
        head = subprocess.Popen(
            [
                str(ray),
                "start",
                "--head",
                "--block",
                "--node-ip-address=127.0.0.1",
                f"--port={port}",
                f"--num-cpus={cpus}",
                "--include-dashboard=false",
                "--disable-usage-stats",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **RAY_ENV},
        )
        try:
            while "Ray runtime started" not in log_path.read_text():
                if head.poll() is not None or time.perf_counter() - started > 120:
                    raise CrisisLensError(f"ray start --head did not come up: {log_path.read_text()[-2000:]}")
                time.sleep(0.2)
            yield f"127.0.0.1:{port}", time.perf_counter() - started
        finally:
            head.send_signal(signal.SIGTERM)  # `ray start --block` stops what it started
            try:
                head.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(head.pid, signal.SIGKILL)
                head.wait(10)


def synthetic_posts(path: Path, n: int, photos: list[Path] | None = None, seed: int = 28) -> Path:
    """`n` posts as JSON lines, text drawn from `WORDS` (4 to 40 words); with `photos`, each post
    names one of them in turn (copied beside the file: image paths are relative to it)."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = []
    for photo in photos or []:
        shutil.copyfile(photo, path.parent / photo.name)
        names.append(photo.name)
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            row: dict[str, Any] = {"id": f"s{i:07d}", "text": " ".join(rng.choices(WORDS, k=rng.randint(4, 40)))}
            if names:
                row["image"] = names[i % len(names)]
            f.write(json.dumps(row) + "\n")
    return path


class _Busy:
    """How many cores the whole machine kept busy between `start` and `stop` (/proc/stat)."""

    @staticmethod
    def _read() -> tuple[int, int]:
        try:
            fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        except (OSError, ValueError):
            return 0, 0
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return sum(fields) - idle, sum(fields)

    def __init__(self) -> None:
        self.busy0, self.total0 = self._read()

    def cores(self) -> float | None:
        busy, total = self._read()
        if total <= self.total0:
            return None
        return round((busy - self.busy0) / (total - self.total0) * (os.cpu_count() or 1), 2)


def _high_water_mb(pid: int) -> float | None:
    """The process's own peak resident memory so far (Linux: VmHWM in /proc/PID/status)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _peak_rss_mb(proc: subprocess.Popen[bytes], stop: threading.Event, peak: list[float]) -> None:
    """The peak resident memory of `proc` alone (not its children), read every 0.2 s until it exits."""
    while not stop.is_set() and proc.poll() is None:
        seen = _high_water_mb(proc.pid)
        if seen is not None:
            peak[0] = max(peak[0], seen)
        stop.wait(0.2)


def run_command(args: list[str], posts: int) -> dict[str, Any]:
    """Run one `crisislens` command; its wall time, posts/s, peak memory and the machine's load."""
    load0 = os.getloadavg()[0]
    busy = _Busy()
    stop, peak = threading.Event(), [0.0]
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "crisislens.runtime", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **RAY_ENV},
    )
    watcher = threading.Thread(target=_peak_rss_mb, args=(proc, stop, peak), daemon=True)
    watcher.start()
    out, err = proc.communicate()
    seconds = time.perf_counter() - started
    stop.set()
    watcher.join()
    if proc.returncode != 0:
        raise CrisisLensError(f"crisislens {' '.join(args)} failed ({proc.returncode}): {err.decode()[-2000:]}")
    return {
        "command": "crisislens " + " ".join(args),
        "seconds": round(seconds, 2),
        "posts_per_second": round(posts / seconds, 2),
        "peak_rss_mb": round(peak[0], 1),
        "load_avg_1min": [round(load0, 2), round(os.getloadavg()[0], 2)],
        "busy_cores": busy.cores(),
        "output": out.decode().strip().splitlines()[-1:],
    }


def compare(store: Path, shards: Path) -> dict[str, Any]:
    """How the cluster run's shards differ from the plain run's store, post by post."""
    with TriageStore(store, readonly=True) as s:
        plain = {r["post_id"]: r["prediction"] for r in s.rows()}
    keys = ["post_id", "label", "probabilities", "rationale", "patch_grid"]
    labels = prob = score = patch = 0.0
    words = 0
    seen: set[str] = set()
    for row in iter_rows(shard_files(shards, PREDICTIONS), keys):
        seen.add(row["post_id"])
        ref = plain.get(row["post_id"])
        if ref is None:
            continue
        labels += ref["label"] != row["label"]
        prob = max([prob, *(abs(ref["probabilities"][k] - v) for k, v in row["probabilities"].items())])
        mine, theirs = row["rationale"], ref["token_rationale"]
        words += [w["word"] for w in mine] != [t["text"] for t in theirs]
        score = max([score, *(abs(w["score"] - t["score"]) for w, t in zip(mine, theirs))])
        if (row["patch_grid"] is None) != (ref["patch_rationale"] is None):
            patch = float("inf")
        elif row["patch_grid"] is not None:
            pairs = zip(sum(row["patch_grid"], []), sum(ref["patch_rationale"], []))
            patch = max([patch, *(abs(a - b) for a, b in pairs)])
    return {
        "posts_plain": len(plain),
        "posts_cluster": len(seen),
        "same_posts": set(plain) == seen,
        "label_differences": int(labels),
        "rationale_word_differences": words,
        "max_probability_difference": prob,
        "max_rationale_score_difference": score,
        "max_patch_score_difference": patch,
    }


def _actor_memory(shards: Path) -> dict[str, float]:
    lines = (shards / RUNS_LOG).read_text(encoding="utf-8").splitlines()
    workers: dict[str, float] = json.loads(lines[-1])["workers"]
    return workers


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def run_bench(config: BenchConfig) -> tuple[Path, Path]:
    photos = sorted(SAMPLE_PHOTOS.glob("*.jpg"))
    if config.photo_posts and not photos:
        raise CrisisLensError(f"{SAMPLE_PHOTOS}: no photos; the bench runs from a checkout (samples/images)")
    shutil.rmtree(config.work, ignore_errors=True)
    stack = ExitStack()
    address, head_seconds = None, None
    if not config.own_instance:
        address, head_seconds = stack.enter_context(running_head(config.work, os.cpu_count() or 1))
    with stack:
        pairs = _pairs(config, address, head_seconds)
    config_dict = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()}
    if config.update:
        pairs = _merged(config.reports / f"{REPORT}.json", pairs)
    payload = {"provenance": provenance(), "ray": _version("ray"), "config": config_dict, "pairs": pairs}
    return write_report(REPORT, payload, render(payload), config.reports)


def _merged(previous: Path, pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The previous report's rows that this run did not measure (each keeps its own provenance),
    then this run's."""
    if not previous.is_file():
        return pairs
    try:
        old = json.loads(previous.read_text())
    except json.JSONDecodeError as exc:
        raise CrisisLensError(f"{previous}: not a bench report ({exc}); run without --update") from exc
    fresh = {(p["posts"], p["workers"]) for p in pairs}
    kept = [
        {**p, "provenance": p.get("provenance", old.get("provenance"))}
        for p in old.get("pairs", [])
        if (p.get("posts"), p.get("workers")) not in fresh
    ]
    order = {"text": 0, "photo": 1}
    return sorted(kept + pairs, key=lambda p: (order.get(p["posts"], 2), p["workers"]))


def _pairs(config: BenchConfig, address: str | None, head_seconds: float | None) -> list[dict[str, Any]]:
    photos = sorted(SAMPLE_PHOTOS.glob("*.jpg"))
    sets = {
        "text": (synthetic_posts(config.work / "text" / "posts.jsonl", config.posts), config.posts),
        "photo": (
            synthetic_posts(config.work / "photo" / "posts.jsonl", config.photo_posts, photos),
            config.photo_posts,
        ),
    }
    pairs = []
    for name, (posts, n) in sets.items():
        if not n:
            continue
        for i, workers in enumerate(config.workers):
            store, shards = config.work / f"{name}-{workers}.sqlite", config.work / f"{name}-{workers}-shards"
            common = [
                str(posts),
                "--bundle",
                str(config.bundle),
                "--workers",
                str(workers),
                "--threads",
                "1",
                "--quiet",
            ]
            commands = {
                "plain": ["triage", *common, "--store", str(store)],
                "ray": ["triage", *common, "--engine", "ray", "--parquet", str(shards)]
                + (["--address", address] if address else []),
            }
            order = ["plain", "ray"] if i % 2 == 0 else ["ray", "plain"]
            done = {kind: run_command(commands[kind], n) for kind in order}
            done["ray"]["actor_peak_rss_mb"] = _actor_memory(shards)
            plain_rate = done["plain"]["posts_per_second"]
            pair = {
                "posts": name,
                "count": n,
                "workers": workers,
                "order": order,
                "ray_instance": "own local instance" if address is None else "running head",
                "head_start_seconds": None if head_seconds is None else round(head_seconds, 2),
                "plain": done["plain"],
                "ray": done["ray"],
                "overhead": round(1 - done["ray"]["posts_per_second"] / plain_rate, 4),
                "same_answers": compare(store, shards),
                "provenance": provenance(),
            }
            if head_seconds is not None:  # what the run would show had it started its own instance
                pair["overhead_with_start"] = round(1 - n / (done["ray"]["seconds"] + head_seconds) / plain_rate, 4)
            pairs.append(pair)
    return pairs


def render(payload: dict[str, Any]) -> str:
    prov = payload["provenance"]
    env = prov["environment"]
    rows = []
    for p in payload["pairs"]:
        actors = p["ray"]["actor_peak_rss_mb"]
        same = p["same_answers"]
        with_start = p.get("overhead_with_start")
        rows.append(
            [
                f"{p['count']:,} {p['posts']}",
                p["workers"],
                p.get("ray_instance", "own local instance"),
                f"{p['plain']['posts_per_second']:.1f}",
                f"{p['ray']['posts_per_second']:.1f}",
                f"{p['overhead'] * 100:+.1f}%",
                "–" if with_start is None else f"{with_start * 100:+.1f}% ({p['head_start_seconds']:.1f} s)",
                f"{p['plain']['peak_rss_mb']:.0f}",
                ", ".join(f"{v:.0f}" for v in sorted(actors.values())),
                f"{p['ray']['peak_rss_mb']:.0f}",
                f"{p['plain']['busy_cores']} / {p['ray']['busy_cores']}",
                f"{p['plain']['load_avg_1min'][0]:.1f}-{p['plain']['load_avg_1min'][1]:.1f} / "
                f"{p['ray']['load_avg_1min'][0]:.1f}-{p['ray']['load_avg_1min'][1]:.1f}",
                "yes" if same["same_posts"] and not same["label_differences"] else "NO",
                f"{same['max_probability_difference']:.1e} / {same['max_rationale_score_difference']:.1e}",
                _when(p.get("provenance") or prov),
            ]
        )
    lines = [
        "# The cluster path against plain triage, on one machine",
        "",
        f"Command: `{prov['command']}`; commit {prov['git_commit']}{' (dirty)' if prov['git_dirty'] else ''}; "
        f"{prov['created']}; {env['cpu']}, {env['cpu_count']} cores; Python {env['python']}; "
        f"ray {payload['ray']}.",
        "",
        "posts/s = posts / wall time of the whole command (start-up and model load included). Ray instance:",
        "`running head`: the cluster run joins a head node started before it (`--address`), as on a cluster",
        "a team already runs; `own local instance`: the run starts and stops one itself. Overhead = 1 - Ray's",
        "posts/s / plain posts/s; with start: the same had the run also paid the head's start (measured,",
        "in brackets). Busy cores: how many of the machine's cores were busy during the run, every process",
        "counted (plain / Ray); load average at start-end. Same answers: same posts and labels; largest",
        "difference of a probability / of a rationale score. Run: the row's commit and date (`--update`",
        "re-measures some rows and keeps the others).",
        "",
        *md_table(
            [
                "posts",
                "workers",
                "Ray instance",
                "plain posts/s",
                "Ray posts/s",
                "overhead",
                "with start",
                "plain MB",
                "MB per actor",
                "Ray driver MB",
                "busy cores",
                "load",
                "same labels",
                "max diff p / score",
                "run",
            ],
            rows,
        ),
    ]
    return "\n".join(lines)


def _when(prov: dict[str, Any]) -> str:
    dirty = " (dirty)" if prov.get("git_dirty") else ""
    return f"{prov.get('git_commit', '?')}{dirty} {str(prov.get('created', '?'))[:16]}"


__all__ = [
    "REPORT",
    "BenchConfig",
    "compare",
    "render",
    "run_bench",
    "run_command",
    "running_head",
    "synthetic_posts",
]
