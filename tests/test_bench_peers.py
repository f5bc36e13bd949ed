"""The bench's end-to-end peers and whole-process measures (issue 29): the student in PyTorch eager
is the bundle's own model (same outputs as its ONNX graph), the peers and settings alternate in
the same rounds, and the memory and cold-start measures are reported as measured."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO


def _posts() -> list:
    from crisislens.runtime.readers import read_posts

    return read_posts(REPO / "samples" / "posts.jsonl").posts


def _engines(bundle_dir: Path, threads: int = 1):
    from crisislens.distill.bench_rows import EagerBackend, eager_variant
    from crisislens.runtime.bundle import load_bundle
    from crisislens.runtime.engine import Engine

    bundle = load_bundle(bundle_dir)
    variant = eager_variant(bundle)
    onnx_engine = Engine(bundle, variant.name, threads=threads)
    eager_engine = Engine(bundle, variant.name, backend=EagerBackend(variant.path, threads))
    return onnx_engine, eager_engine


def test_the_eager_student_gives_the_onnx_graphs_outputs(tiny_bundle):
    """The PyTorch-eager peer runs the bundle's graph with PyTorch operators: logits, token and
    patch scores equal ONNX Runtime's on the same variant to float tolerance, posts with and
    without a photo, so its speed is the same model's. (The shipped bundle holds only its
    dynamic-INT8 variant; its bench row runs the FP32 export, `--eager-model`.)"""
    pytest.importorskip("torch")
    onnx_engine, eager_engine = _engines(tiny_bundle)
    posts = _posts()
    for batch in (posts[:8], [p for p in posts if p.image is not None][:3], posts[8:9]):
        feeds = onnx_engine.prepare(batch).feeds
        for a, b in zip(onnx_engine.run(feeds), eager_engine.run(feeds)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    text_only = [p.__class__(**{**p.__dict__, "image": None}) for p in posts[:4]]
    feeds = onnx_engine.prepare(text_only).feeds
    for a, b in zip(onnx_engine.run(feeds), eager_engine.run(feeds)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_the_eager_row_can_run_the_fp32_export_of_a_bundle_with_only_int8_variants(tiny_bundle, tiny_exported,
                                                                                     tmp_path):
    """`bench --eager-model FILE`: the row runs that ONNX file in PyTorch eager behind the bundle's
    own engine (tokenizer, preprocessing, outputs); its labels are the FP32 graph's."""
    pytest.importorskip("torch")
    from crisislens.distill.bench_rows import EagerStudentRunner
    from crisislens.runtime.bundle import load_bundle
    from crisislens.runtime.engine import Engine

    posts = _posts()[:8]
    runner = EagerStudentRunner(bundle=str(tiny_bundle), threads=1, model=str(tiny_exported[1]))
    expected = [p.label for p in Engine(load_bundle(tiny_bundle), threads=1).predict(posts)]
    assert runner.predict(posts) == expected
    assert runner.size_mb == pytest.approx(Path(tiny_exported[1]).stat().st_size / 2**20)
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        EagerStudentRunner(bundle=str(tiny_bundle), model=str(tmp_path / "missing.onnx"))


def test_an_eager_model_with_other_inputs_is_refused(tiny_bundle, tmp_path):
    """Another model than the bundle's student (here: a photo of another size) is named, not timed."""
    pytest.importorskip("torch")
    import onnx

    from crisislens.distill.bench_rows import EagerStudentRunner
    from crisislens.runtime.bundle import load_bundle

    model = onnx.load(str(load_bundle(tiny_bundle).variant().path))
    pixels = next(i for i in model.graph.input if i.name == "pixel_values")
    pixels.type.tensor_type.shape.dim[2].dim_value += 1
    other = tmp_path / "other.onnx"
    onnx.save(model, str(other))
    with pytest.raises(ValueError, match="other.onnx.*not those of the bundle"):
        EagerStudentRunner(bundle=str(tiny_bundle), model=str(other))


def test_an_operator_the_eager_graph_does_not_know_is_an_error(tmp_path):
    pytest.importorskip("torch")
    import onnx
    from onnx import TensorProto, helper

    from crisislens.distill.bench_rows import EagerGraph

    node = helper.make_node("Hardmax", ["x"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
    )
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph), path)
    with pytest.raises(ValueError, match="Hardmax"):
        EagerGraph(path)


def test_the_eager_variant_is_one_that_computes_in_fp32():
    from types import SimpleNamespace

    from crisislens.distill.bench_rows import eager_variant

    def variant(name, quantization, precision="int8"):
        return SimpleNamespace(name=name, quantization=quantization, precision=precision)

    dyn, wo = variant("int8-text", "dynamic"), variant("int8-w8a32", "weight-only")
    assert eager_variant(SimpleNamespace(variants={"a": dyn, "b": wo}, path="B")) is wo
    fp32 = variant("fp32", None, "fp32")
    assert eager_variant(SimpleNamespace(variants={"a": dyn, "b": wo, "c": fp32}, path="B")) is fp32
    with pytest.raises(ValueError, match="no FP32.*--eager-model"):
        eager_variant(SimpleNamespace(variants={"a": dyn}, path="B"))


def test_peers_alternate_with_the_triage_settings_and_get_ratios_per_round(tmp_path):
    from crisislens.evaluation.bench import triage_rounds
    from crisislens.evaluation.bench_report import triage_section

    calls = []
    rates = {
        "before": iter([100.0, 100.0]),
        "defaults": iter([200.0, 300.0]),
        "eager": iter([40.0, 50.0]),
        "pipe": iter([50.0, None]),
    }

    def turn(args, inputs, bundle, store):
        name = "defaults" if not args else "before"
        calls.append(name)
        return {"status": "ok", "posts_per_s": next(rates[name]), "load": [1.0, 1.1]}

    def peer(spec):
        calls.append(spec["name"])
        rate = next(rates[spec["name"]])
        if rate is None:
            return {"status": "failed", "error": ["boom"], "load": [1.0, 1.0]}
        return {"status": "ok", "posts_per_s": rate, "load": [1.0, 1.2]}

    run = triage_rounds(
        {"before": ["--workers", "1"], "defaults": []},
        ["t.tsv"],
        "B",
        tmp_path,
        rounds=2,
        turn=turn,
        peers={"eager": {"name": "eager", "row": "e", "threads": 2}, "pipe": {"name": "pipe", "row": "p"}},
        peer=peer,
    )
    assert calls == ["before", "defaults", "eager", "pipe", "pipe", "eager", "defaults", "before"]
    eager = run["ratio_to_peers"]["defaults"]["eager"]
    assert eager["per_round"] == pytest.approx([5.0, 6.0]) and eager["median"] == pytest.approx(5.5)
    assert run["ratio_to_peers"]["defaults"]["pipe"]["per_round"] == [4.0, None]
    assert run["errors"]["pipe"] == [["boom"]]
    md = "\n".join(triage_section(run))
    assert "| defaults | eager | 5.00x / 6.00x | 5.50x | 5.00-6.00x |" in md
    assert "| defaults | pipe | 4.00x / – | 4.00x | 4.00-4.00x |" in md
    assert "eager on 2 thread(s)" in md and "pipe: [['boom']]" in md


def test_memory_and_cold_start_are_reported_from_their_turns(tmp_path):
    from crisislens.evaluation.bench_report import cold_start_section, memory_section
    from crisislens.evaluation.bench_scale import cold_start, memory_scale
    from crisislens.runtime.readers import read_posts

    seen = []

    def turn(args, inputs, bundle, store):
        report = read_posts(inputs)
        assert not report.problems and len({p.id for p in report.posts}) == len(report.posts)
        seen.append(len(report.posts))
        n = len(report.posts)
        return {"status": "ok", "posts": n, "seconds": 0.4 + len(seen) / 100, "posts_per_s": n / 2,
                "peak_rss_mb": 150.0 + n / 1000, "load": [0.5, 0.6]}

    memory = memory_scale([10, 2000], "B", tmp_path, turn)
    assert seen == [10, 2000] and memory["peak_rss_mb"] == [150.01, 152.0]
    assert memory["growth"] == pytest.approx(1.99 / 150.01)
    assert not list(tmp_path.glob("synthetic-*.jsonl"))  # the posts are removed after their turn
    assert "| 2,000 | 2,000 | 152.0 | 1000.0 | 0.5->0.6 |" in memory_section(memory)
    assert any("1.3%" in line for line in memory_section(memory))

    seen.clear()
    cold = cold_start("B", tmp_path, 3, turn)
    assert seen == [1, 1, 1, 1] and cold["seconds"] == pytest.approx([0.42, 0.43, 0.44])  # the warm-up dropped
    assert cold["median"] == pytest.approx(0.43)
    assert "| 3 | 0.42 / 0.43 / 0.44 | 0.43 | 0.42-0.44 | 150 |" in "\n".join(cold_start_section(cold))


def test_a_peer_row_runs_end_to_end_in_a_child(tmp_path, monkeypatch):
    """bench-row with "end_to_end" predicts every post in triage's batches and says how many."""
    from crisislens.evaluation import bench

    predicted = []

    class Fake:
        def predict(self, posts):
            predicted.append(len(posts))
            return ["not_humanitarian"] * len(posts)

    monkeypatch.setattr(bench, "make_runner", lambda *a, **k: Fake())
    posts = _posts()
    monkeypatch.setattr(bench, "load_test_posts", lambda root: (posts, [], []))
    out = bench.run_row({"row": "x", "bundle": "B", "data_root": "D", "end_to_end": True})
    assert out == {"name": "x", "posts": len(posts)} and sum(predicted) == len(posts)
    assert json.dumps(out)


def test_the_end_to_end_peers_are_not_bench_rows(monkeypatch):
    """`crisislens bench` lists plugin rows for its per-row table; the end-to-end peers run whole
    in the triage rounds instead, and only the child that runs one builds it."""
    from types import SimpleNamespace

    from crisislens.evaluation import bench

    factories = {"pytorch-student": object, "pytorch-eager-student": object, "transformers-minilm-pipeline": object}
    ep = SimpleNamespace(name="distill", load=lambda: lambda: factories)
    monkeypatch.setattr(bench, "entry_points", lambda group: [ep])
    assert list(bench.plugin_runners()) == ["pytorch-student"]
    assert list(bench.plugin_runners(with_peers=True)) == list(factories)


def test_bench_names_a_missing_eager_model(tiny_bundle, tmp_path, capsys):
    from crisislens.runtime.cli import main

    code = main(["bench", "--bundle", str(tiny_bundle), "--eager-model", str(tmp_path / "gone.onnx"),
                 "--reports", str(tmp_path)])
    err = capsys.readouterr().err
    assert code != 0 and "--eager-model" in err and "gone.onnx" in err, err
    assert not (tmp_path / "bench.json").exists()
