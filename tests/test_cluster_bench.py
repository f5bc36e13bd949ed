"""`crisislens cluster bench`: the cluster path against plain triage, joined to a head node it
starts and stops itself; `--update` keeps the rows a run does not measure."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("ray", reason="the cluster extra is not installed: pip install 'crisislens[cluster]'")
pytest.importorskip("pyarrow", reason="the cluster extra is not installed")

from crisislens.cluster.bench import SAMPLE_PHOTOS, _merged, render  # noqa: E402


def test_a_small_bench_joins_its_own_head_and_reports_every_row(tmp_path):
    if not list(SAMPLE_PHOTOS.glob("*.jpg")):
        pytest.skip(f"{SAMPLE_PHOTOS}: no sample photos (the bench runs from a checkout)")
    reports = tmp_path / "reports"
    cmd = [sys.executable, "-m", "crisislens.runtime", "cluster", "bench", "--posts", "30", "--photo-posts", "4",
           "--workers", "1", "--work", str(tmp_path / "work"), "--reports", str(reports)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    payload = json.loads((reports / "cluster_bench.json").read_text())
    pairs = {(p["posts"], p["workers"]): p for p in payload["pairs"]}
    assert set(pairs) == {("text", 1), ("photo", 1)}
    for p in pairs.values():
        assert p["ray_instance"] == "running head" and p["head_start_seconds"] > 0
        assert "--address 127.0.0.1:" in p["ray"]["command"]
        assert p["same_answers"]["same_posts"] and not p["same_answers"]["label_differences"]
        assert p["plain"]["peak_rss_mb"] > 20  # the plain run's own peak, read from /proc
        assert p["overhead_with_start"] > p["overhead"]  # paying the head's start only adds
    assert "running head" in (reports / "cluster_bench.md").read_text()
    head_log = (tmp_path / "work" / "head.log").read_text()
    port = next(p for p in pairs.values())["ray"]["command"].split("--address 127.0.0.1:")[1].split()[0]
    left = subprocess.run(["pgrep", "-f", f"port={port}"], capture_output=True, text=True).stdout.split()
    assert not left, f"the bench's head is still running: {left}\n{head_log[-1000:]}"


def _pair(posts: str, workers: int, overhead: float, commit: str) -> dict:
    run = {"posts_per_second": 10.0, "peak_rss_mb": 100.0, "busy_cores": 2.0, "load_avg_1min": [1.0, 1.0],
           "seconds": 1.0, "actor_peak_rss_mb": {"a": 300.0}}
    return {"posts": posts, "count": 10, "workers": workers, "plain": run, "ray": run, "overhead": overhead,
            "same_answers": {"same_posts": True, "label_differences": 0, "max_probability_difference": 0.0,
                             "max_rationale_score_difference": 0.0},
            "provenance": {"git_commit": commit, "git_dirty": False, "created": "2026-12-05T08:00:00+00:00"}}


def test_update_replaces_only_the_rows_it_measured(tmp_path):
    old = [_pair("text", 1, -0.4, "old"), _pair("text", 2, -0.3, "old"), _pair("photo", 1, 0.24, "old")]
    (tmp_path / "cluster_bench.json").write_text(json.dumps({"pairs": old}))
    merged = _merged(tmp_path / "cluster_bench.json", [_pair("photo", 1, 0.05, "new"), _pair("photo", 2, 0.0, "new")])
    assert [(p["posts"], p["workers"], p["provenance"]["git_commit"]) for p in merged] == [
        ("text", 1, "old"), ("text", 2, "old"), ("photo", 1, "new"), ("photo", 2, "new")]
    prov = {"command": "crisislens cluster bench", "git_commit": "new", "git_dirty": False,
            "created": "2026-12-05T08:00:00+00:00", "environment": {"cpu": "cpu", "cpu_count": 2, "python": "3.11"}}
    text = render({"provenance": prov, "ray": "2.60.0", "pairs": merged})
    assert text.count("| old 2026-12-05T08:00 |") == 2 and text.count("| new 2026-12-05T08:00 |") == 2
    assert "+5.0%" in text and "+24.0%" not in text
    (tmp_path / "cluster_bench.json").write_text("{broken")
    with pytest.raises(Exception, match="not a bench report"):
        _merged(tmp_path / "cluster_bench.json", [])
