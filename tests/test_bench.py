"""Benchmark pieces without real models: latency statistics, one measured row with a fake runner,
the targets table, the Markdown report, the chart, and a real child-process row on the tiny bundle."""

from __future__ import annotations

import json

import pytest

from crisislens.runtime.bench import Latency, chart, measure, targets, to_markdown
from crisislens.runtime.labels import LABEL_NAMES
from crisislens.runtime.schema import Post


def test_latency_percentiles_on_known_values():
    lat = Latency.of([i / 1000 for i in range(1, 101)])  # 1..100 ms
    assert lat.count == 100 and lat.p50 == pytest.approx(50.5) and lat.p99 == pytest.approx(99.01)
    assert lat.mean == pytest.approx(50.5)
    with pytest.raises(ValueError):
        Latency.of([])


class FakeRunner:
    name, backend, precision, size_mb = "fake", "none", "fp32", 1.0

    def __init__(self):
        self.calls = []

    def predict(self, posts):
        self.calls.append(len(posts))
        return [p.label or LABEL_NAMES[0] for p in posts]


def test_measure_one_row_with_a_fake_runner():
    posts = [Post(id=str(i), text="t", label=LABEL_NAMES[i % 5]) for i in range(40)]
    runner = FakeRunner()
    row = measure(runner, posts, posts[:10], posts[10:20], spawned_at=None, single=5, warmup=2, batch=8,
                  throughput_posts=24)
    assert row["macro_f1"] == 1.0 and row["labels"] == [p.label for p in posts]
    assert row["latency_batch1_text_only"]["count"] == 5
    assert row["throughput_batch8_text_only"] > 0 and row["peak_rss_mb"] > 0
    assert row["cold_start_s"] is None


def _row(name, backend, p50, tput_text=200.0, tput_img=50.0, rss=300.0, cold=1.0):
    lat = {"count": 10, "mean": p50, "p50": p50, "p90": p50, "p95": p50, "p99": p50, "stdev": 0.0}
    return {"name": name, "backend": backend, "precision": "int8", "size_mb": 25.0, "macro_f1": 0.6, "status": "ok",
            "latency_batch1_text_only": lat, "latency_batch1_text_image": lat, "throughput_batch32_text_only": tput_text,
            "throughput_batch32_text_image": tput_img, "peak_rss_mb": rss, "cold_start_s": cold, "providers": None}


def test_targets_markdown_and_chart(tmp_path):
    result = {"rows": [_row("ort-int8", "onnxruntime", 20.0), _row("peer-transformers-eager", "pytorch", 50.0),
                       {"name": "ort-fp16", "status": "failed", "error": ["boom"]}],
              "machine": {"cpu": "x", "cpu_count": 2, "machine": "x86_64", "python": "3.11",
                          "onnxruntime_providers": ["CPUExecutionProvider"]},
              "batch": 32, "single": 10, "throughput_posts": 64}
    rows = {t["target"][:12]: t for t in targets(result)}
    assert rows["ort-int8 >= "]["met"] is False and rows["ort-int8 >= "]["measured"] == "2.50x"
    assert rows["ort-int8 p50"]["met"] is True
    md = to_markdown(result, {"command": "crisislens bench", "git_commit": "abc", "created": "now"})
    assert "| ort-int8 | onnxruntime |" in md and "failed" in md
    png = chart(result, tmp_path / "bench.png")
    assert png.stat().st_size > 0


@pytest.mark.usefixtures("tiny_bundle")
def test_a_real_row_in_a_child_process(tiny_bundle, tmp_path):
    """The ONNX row as `crisislens bench` runs it: a fresh process over a labelled CrisisMMD-style file."""
    from crisislens.runtime.bench import spawn_row

    root = tmp_path / "data"
    (root / "crisismmd").mkdir(parents=True)
    (root / "images" / "crisismmd").mkdir(parents=True)
    header = "event_name\ttweet_id\timage_id\ttweet_text\timage\tlabel\tlabel_text\tlabel_image\tlabel_text_image\n"
    rows = [f"ev\t{i}\t{i}_0\tflood number {i}\tdata_image/ev/{i}_0.jpg\t{LABEL_NAMES[i % 5]}\tx\tx\tPositive\n"
            for i in range(12)]
    (root / "crisismmd" / "task_humanitarian_text_img_agreed_lab_test.tsv").write_text(header + "".join(rows))
    from PIL import Image

    (root / "images" / "crisismmd" / "ev").mkdir()
    for i in range(0, 12, 2):
        Image.new("RGB", (30, 20), (i * 10, 0, 0)).save(root / "images" / "crisismmd" / "ev" / f"{i}_0.jpg")
    row = spawn_row({"row": "ort-fp32", "bundle": str(tiny_bundle), "data_root": str(root), "threads": 1,
                     "single": 4, "batch": 4, "throughput_posts": 8})
    assert row["status"] == "ok", row
    assert row["cold_start_s"] > 0 and row["peak_rss_mb"] > 0 and len(row["labels"]) == 12
    json.dumps(row)
    both = spawn_row({"interleave": ["ort-fp32"], "bundle": str(tiny_bundle), "data_root": str(root), "threads": 1,
                      "single": 4, "rounds": 2, "warmup": 1})
    assert both["status"] == "ok", both
    assert set(both["p50_ms"]) == {"ort-fp32"} and both["p50_ms"]["ort-fp32"] > 0
    assert both["posts"] == 4 and both["rounds"] == 2  # the photo posts, timed against each other


def test_a_runtime_row_is_named_by_the_backend_that_ran(monkeypatch, tmp_path):
    """A bundle whose engine matches the GPU runs on native TensorRT: the row must not say ort-."""
    import types

    import crisislens.runtime.bundle as bundle_mod
    import crisislens.runtime.engine as engine_mod
    from crisislens.runtime.bench import OnnxRunner

    model = tmp_path / "model.fp16.onnx"
    model.write_bytes(b"x" * 1024)

    class StubEngine:
        def __init__(self, bundle, variant, threads=None):
            self.variant = types.SimpleNamespace(name=variant, precision="fp16", path=model)
            self.backend = types.SimpleNamespace(name=bundle, providers=["stub"])

    monkeypatch.setattr(bundle_mod, "load_bundle", lambda path: str(path))
    monkeypatch.setattr(engine_mod, "Engine", StubEngine)
    trt = OnnxRunner("tensorrt", "fp16")
    assert (trt.name, trt.backend) == ("trt-fp16", "tensorrt")
    ort = OnnxRunner("onnxruntime", "fp16")
    assert (ort.name, ort.backend) == ("ort-fp16", "onnxruntime")


def test_interleaved_runners_take_turns_and_are_timed_on_one_clock():
    from crisislens.runtime.bench import interleaved_p50

    now = [0.0]
    order = []

    class Slow:
        def __init__(self, name, seconds):
            self.name, self.seconds = name, seconds

        def predict(self, posts):
            order.append(self.name)
            now[0] += self.seconds
            return [LABEL_NAMES[0] for _ in posts]

    posts = [Post(id=str(i), text="t") for i in range(4)]
    p50 = interleaved_p50({"fast": Slow("fast", 0.005), "peer": Slow("peer", 0.02)}, posts, warmup=1, rounds=2,
                          clock=lambda: now[0])
    assert p50 == {"fast": pytest.approx(5.0), "peer": pytest.approx(20.0)}
    timed = order[2:]  # after one warm-up post each
    assert len(timed) == 2 * 4 * 2
    assert timed[:4] == ["fast", "peer", "peer", "fast"]  # who goes first alternates post by post
    assert timed[8:12] == ["peer", "fast", "fast", "peer"]  # and round by round


def test_the_speed_up_target_is_judged_on_the_interleaved_run_when_there_is_one():
    result = {"rows": [_row("ort-int8-text", "onnxruntime", 6.0), _row("peer-transformers-eager", "pytorch", 17.0)],
              "machine": {"cpu": "x", "cpu_count": 2, "machine": "x86_64", "python": "3.11",
                          "onnxruntime_providers": ["CPUExecutionProvider"]},
              "batch": 32, "single": 10, "throughput_posts": 64}
    first = {t["target"][:16]: t for t in targets(result)}["ort-int8-text >="]
    assert first["met"] is False and first["measured"] == "2.83x"  # separate rows only
    result["interleaved"] = {"status": "ok", "posts": 10, "rounds": 3,
                             "p50_ms": {"ort-int8-text": 5.0, "peer-transformers-eager": 20.0}}
    judged = {t["target"][:16]: t for t in targets(result)}["ort-int8-text >="]
    assert judged["met"] is True and judged["measured"] == "4.00x interleaved (2.83x from the separate rows)"
    md = to_markdown(result, {"command": "crisislens bench", "git_commit": "abc", "created": "now"})
    assert "## Speed-up over the peer, timed together" in md and "| ort-int8-text | 5.0 | 20.0 | 4.00x | 2.83x |" in md
    result["interleaved"] = {"status": "failed", "error": ["boom"]}
    assert {t["target"][:16]: t for t in targets(result)}["ort-int8-text >="]["measured"] == "2.83x"
    assert "The interleaved run failed" in to_markdown(result, {"command": "c", "git_commit": "a", "created": "n"})
