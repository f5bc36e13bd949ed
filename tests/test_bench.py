"""Benchmark pieces without real models: latency statistics, one measured row with a fake runner,
the speed-ups, the Markdown report, the chart, and a real child-process row on the tiny bundle."""

from __future__ import annotations

import json

import pytest

from crisislens.evaluation.bench import Latency, measure
from crisislens.evaluation.bench_report import chart, speedups, to_markdown
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


def test_speedups_markdown_and_chart(tmp_path):
    result = {"rows": [_row("ort-int8", "onnxruntime", 20.0), _row("peer-transformers-eager", "pytorch", 50.0),
                       {"name": "ort-fp16", "status": "failed", "error": ["boom"]}],
              "machine": {"cpu": "x", "cpu_count": 2, "machine": "x86_64", "python": "3.11",
                          "onnxruntime_providers": ["CPUExecutionProvider"]},
              "batch": 32, "single": 10, "throughput_posts": 64}
    assert speedups(result)["ort-int8"]["separate"] == pytest.approx(2.5)
    md = to_markdown(result, {"command": "crisislens bench", "git_commit": "abc", "created": "now"})
    assert "| ort-int8 | onnxruntime |" in md and "failed" in md
    assert "Targets" not in md  # measurements only: an issue says which targets they meet
    png = chart(result, tmp_path / "bench.png")
    assert png.stat().st_size > 0


@pytest.mark.usefixtures("tiny_bundle")
def test_a_real_row_in_a_child_process(tiny_bundle, tmp_path):
    """The ONNX row as `crisislens bench` runs it: a fresh process over a labelled CrisisMMD-style file."""
    from crisislens.evaluation.bench import spawn_row

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
    turn = spawn_row({"row": "ort-fp32", "latency_only": True, "bundle": str(tiny_bundle), "data_root": str(root),
                      "threads": 1, "single": 4, "warmup": 1})
    assert turn["status"] == "ok", turn
    assert turn["p50_ms"] > 0 and turn["posts"] == 4 and "labels" not in turn  # photo posts, latency only


def test_a_runtime_row_is_named_by_the_backend_that_ran(monkeypatch, tmp_path):
    """A bundle whose engine matches the GPU runs on native TensorRT: the row must not say ort-."""
    import types

    import crisislens.runtime.bundle as bundle_mod
    import crisislens.runtime.engine as engine_mod
    from crisislens.evaluation.bench import OnnxRunner

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


def test_every_row_runs_in_each_round_in_reversed_order_and_a_failed_turn_is_a_gap():
    from crisislens.evaluation.bench import bench_rounds

    calls = []
    p50 = {"ort-int8-text": iter([5.0, 6.0, 5.5]), "peer": iter([20.0, 18.0, 30.0])}

    def spawn(spec):
        calls.append(spec["row"])
        assert spec["bundle"] == "B" and spec["options"] == {"peer": {"x": 1}}.get(spec["row"], {})
        value = next(p50[spec["row"]])
        if value == 30.0:
            return {"name": spec["row"], "status": "failed", "error": ["boom"], "load": [1.0, 1.2]}
        row = _row(spec["row"], "onnxruntime", value, tput_text=1000 / value)
        return {**row, "labels": ["x"], "load": [1.0, 1.1]}

    rows = bench_rounds(["ort-int8-text", "peer"], {"bundle": "B"}, {"peer": {"x": 1}}, rounds=3, spawn=spawn)
    assert calls == ["ort-int8-text", "peer", "peer", "ort-int8-text", "ort-int8-text", "peer"]
    ours, peer = rows
    assert ours["latency_batch1_text_image"]["p50"] == 5.5  # the median over rounds
    assert ours["throughput_batch32_text_only"] == pytest.approx(1000 / 5.5)
    assert ours["per_round"]["p50_text_image_ms"] == [5.0, 6.0, 5.5] and ours["rounds_ok"] == 3
    assert peer["per_round"]["p50_text_image_ms"] == [20.0, 18.0, None] and peer["rounds_ok"] == 2
    assert peer["load"][2] == [1.0, 1.2]


def test_load_and_spread():
    from crisislens.evaluation.bench import load_moved, spread

    assert spread([None, 3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3}
    assert spread([None]) is None
    assert not load_moved([1.0, 1.3, None], cores=2) and load_moved([1.0, 2.0], cores=2)
    assert not load_moved([4.0, 5.5], cores=8) and load_moved([4.0, 6.5], cores=8)


def test_triage_rounds_alternate_the_settings_and_give_the_ratio_with_its_spread(tmp_path):
    from crisislens.evaluation.bench import triage_rounds
    from crisislens.evaluation.bench_report import to_markdown

    calls = []
    rates = {"one worker": iter([100.0, 90.0, 110.0]), "defaults": iter([160.0, 171.0, 200.0])}

    def turn(args, inputs, bundle, store):
        name = "defaults" if not args else "one worker"
        calls.append(name)
        return {"status": "ok", "posts_per_s": next(rates[name]), "load": [0.5, 0.6]}

    run = triage_rounds({"one worker": ["--workers", "1"], "defaults": []}, ["t.tsv"], "B", tmp_path, rounds=3,
                        compete=1, turn=turn)
    assert calls == ["one worker", "defaults", "defaults", "one worker", "one worker", "defaults"]
    ratio = run["ratio_to_baseline"]["defaults"]
    assert ratio["per_round"] == pytest.approx([1.6, 1.9, 200 / 110]) and ratio["median"] == pytest.approx(200 / 110)
    result = {"rows": [_row("ort-int8-text", "onnxruntime", 6.0)], "triage": [run],
              "load": {"median": 0.5, "min": 0.5, "max": 0.6, "n": 2, "moved": False},
              "machine": {"cpu": "x", "cpu_count": 2, "machine": "x86_64", "python": "3.11",
                          "onnxruntime_providers": ["CPUExecutionProvider"]},
              "batch": 32, "single": 10, "throughput_posts": 64}
    md = to_markdown(result, {"command": "crisislens bench", "git_commit": "abc", "created": "now"})
    assert "## crisislens triage end to end (beside 1 competing busy process(es))" in md
    assert "| defaults | 160.0 / 171.0 / 200.0 | 1.60x / 1.90x / 1.82x | 1.82x | 1.60-1.90x |" in md


def test_a_baseline_bundle_row_gives_the_text_only_ratio():
    from crisislens.evaluation.bench_report import baseline_ratios

    result = {"alternating": {"rounds": 2, "p50_text_only_ms": {"ort-int8-text": [4.0, 5.0],
                                                               "before:ort-int8-text": [5.0, 5.5]}}}
    r = baseline_ratios(result)["ort-int8-text"]
    assert r["baseline"] == "before:ort-int8-text" and r["per_round"] == pytest.approx([1.25, 1.1])


def test_the_speed_up_is_taken_from_the_alternating_rounds_when_there_are_some():
    result = {"rows": [_row("ort-int8-text", "onnxruntime", 6.0), _row("peer-transformers-eager", "pytorch", 17.0)],
              "machine": {"cpu": "x", "cpu_count": 2, "machine": "x86_64", "python": "3.11",
                          "onnxruntime_providers": ["CPUExecutionProvider"]},
              "batch": 32, "single": 10, "throughput_posts": 64}
    first = speedups(result)["ort-int8-text"]
    assert first["alternating"] is None and first["separate"] == pytest.approx(17 / 6)  # separate rows only
    result["alternating"] = {"rounds": 3, "p50_ms": {"ort-int8-text": [5.0, 6.0, 4.0],
                                                     "peer-transformers-eager": [20.0, 18.0, None]}}
    judged = speedups(result)["ort-int8-text"]
    # ratios within rounds 4.0 and 3.0 (round 3 lost its peer turn): median 3.5
    assert judged["alternating"] == pytest.approx(3.5) and judged["per_round"] == pytest.approx([4.0, 3.0])
    md = to_markdown(result, {"command": "crisislens bench", "git_commit": "abc", "created": "now"})
    assert "## Speed-up over the peer, alternating rounds" in md
    assert "| ort-int8-text | 5.0 / 6.0 / 4.0 | 20.0 / 18.0 / – | 4.00x / 3.00x | 3.50x (3.00-4.00x) | 2.83x |" in md
    result["alternating"] = {"rounds": 1, "p50_ms": {"ort-int8-text": [None], "peer-transformers-eager": [20.0]}}
    assert speedups(result)["ort-int8-text"]["alternating"] is None
