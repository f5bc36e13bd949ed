"""Speed without changing a prediction: workers x threads chosen from the cores, batches run on
workers and stored in input order from one place (resume and kill -9 kept), the image tower
skipped for batches without a photo, and the input read in bounded windows."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from test_triage import FIXTURES, write_posts  # the same posts the triage tests write

from crisislens.runtime.cli import main
from crisislens.runtime.parallel import Parallelism, choose, for_backend, in_order
from crisislens.runtime.store import TriageStore


def test_workers_and_threads_fill_the_cores():
    assert choose(available=8) == Parallelism(8, 1)  # default: one single-threaded worker per core
    assert choose(workers=2, available=8) == Parallelism(2, 4)
    assert choose(threads=2, available=8) == Parallelism(4, 2)
    assert choose(workers=3, threads=3, available=2) == Parallelism(3, 3)  # asked for: kept
    assert choose(workers=0, threads=-1, available=1) == Parallelism(1, 1)
    assert choose(workers=4, available=2) == Parallelism(4, 1)
    # a GPU session runs one call at a time unless workers are asked for
    assert for_backend(Parallelism(8, 1), ["CUDAExecutionProvider", "CPUExecutionProvider"], False).workers == 1
    assert for_backend(Parallelism(8, 1), ["CPUExecutionProvider"], False).workers == 8
    assert for_backend(Parallelism(3, 1), ["CUDAExecutionProvider"], True).workers == 3


def test_in_order_keeps_the_order_and_bounds_what_is_in_flight():
    lock = threading.Lock()
    started: list[int] = []

    def slow(i: int) -> int:
        with lock:
            started.append(i)
        time.sleep(0.001 * (7 - i % 7))  # later items often finish first
        return i * i

    yielded = []
    for item, result in in_order(slow, range(60), workers=3, ahead=1):
        assert result == item * item
        yielded.append(item)
        with lock:
            assert len(started) - len(yielded) <= 3 * 2  # bounded: the input is read lazily
    assert yielded == list(range(60))
    assert list(in_order(lambda x: -x, [1, 2], workers=1)) == [(1, -1), (2, -2)]


def test_in_order_raises_at_the_failing_item_and_starts_nothing_more():
    ran: list[int] = []

    def fn(i: int) -> int:
        ran.append(i)
        if i == 3:
            raise RuntimeError("boom")
        return i

    got = []
    with pytest.raises(RuntimeError, match="boom"):
        for item, _ in in_order(fn, range(1000), workers=2, ahead=1):
            got.append(item)
    assert got == [0, 1, 2]
    assert len(ran) < 20


def _stored(path: Path) -> dict[str, tuple[str, str]]:
    with TriageStore(path) as s:
        return {r["post_id"]: (r["prediction"]["label"], json.dumps(r["prediction"]["probabilities"])) for r in s.rows()}


def test_workers_store_the_same_predictions_as_one_worker(tiny_bundle, tmp_path):
    (tmp_path / "bridge.jpg").write_bytes((FIXTURES / "images" / "bridge.jpg").read_bytes())
    posts = write_posts(tmp_path / "posts.jsonl", 50, image="bridge.jpg")
    base = ["triage", str(posts), "--bundle", str(tiny_bundle), "--batch-size", "4", "--quiet"]
    assert main([*base, "--out", str(tmp_path / "one.sqlite"), "--workers", "1", "--threads", "1"]) == 0
    assert main([*base, "--out", str(tmp_path / "three.sqlite"), "--workers", "3", "--threads", "1"]) == 0
    one, three = _stored(tmp_path / "one.sqlite"), _stored(tmp_path / "three.sqlite")
    assert len(one) == 50 and one == three


def test_the_tower_behind_an_if_gives_the_same_outputs(tiny_bundle, tmp_path):
    """`export skip-tower` on a bundle: the tower is only in the If's branch, and text-only,
    photo and mixed batches give the outputs of the original graph."""
    import onnx
    import onnxruntime as ort

    from crisislens.export.skip_tower import check_same, rewrite_bundle, tower_frontier
    from crisislens.runtime.bundle import load_bundle
    from crisislens.runtime.engine import Engine
    from crisislens.runtime.schema import Post

    bundle_dir = shutil.copytree(tiny_bundle, tmp_path / "bundle")
    original = load_bundle(bundle_dir).variant().path.read_bytes()
    engine = Engine(load_bundle(bundle_dir), threads=1)
    photo = FIXTURES / "images" / "bridge.jpg"
    posts = [Post(id=str(i), text=f"bridge collapsed {i}", image=photo if i % 2 else None) for i in range(6)]
    feeds = [engine.prepare(posts[i : i + 1]).feeds for i in range(6)]
    feeds += [engine.prepare(posts).feeds, engine.prepare(posts[0::2]).feeds]
    keep = np.ones((6, engine.grid**2), np.int64)
    keep[:, ::2] = 0
    feeds.append({**feeds[-2], "patch_keep": keep})  # patches removed as tokens (the deletion test)
    result = rewrite_bundle(bundle_dir, feeds, atol=0.0)
    assert result["fp32"]["max_abs_diff"] == 0.0
    rewritten = load_bundle(bundle_dir)  # the manifest's hashes were updated
    model = onnx.load(str(rewritten.variant().path))
    assert [n.op_type for n in model.graph.node].count("If") == 1
    assert tower_frontier(model.graph)[0] == []  # no tower node left outside the If
    options = ort.SessionOptions()
    assert check_same(original, rewritten.variant().path.read_bytes(), feeds, options) == 0.0
    again = rewrite_bundle(bundle_dir, feeds)
    assert "skipped" in again["fp32"]


def test_a_text_only_call_skips_the_tower(tiny_bundle, tmp_path):
    """Timed through ONNX Runtime's profiler: after skip-tower, a text-only call runs no Conv."""
    import onnxruntime as ort

    from crisislens.export.skip_tower import placeholder_feeds, rewrite_bundle
    from crisislens.runtime.backends.ort import session_feeds
    from crisislens.runtime.bundle import load_bundle

    bundle_dir = shutil.copytree(tiny_bundle, tmp_path / "bundle")
    size = load_bundle(bundle_dir).image_config.size
    rewrite_bundle(bundle_dir, [placeholder_feeds(size)], atol=0.0)
    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(tmp_path / "profile")
    session = ort.InferenceSession(str(load_bundle(bundle_dir).variant().path), options)
    session.run(None, session_feeds(session, placeholder_feeds(size)))
    trace = json.loads(Path(session.end_profiling()).read_text())
    ops = {e.get("args", {}).get("op_name") for e in trace if e.get("cat") == "Node"}
    assert "If" in ops and not any(op and "Conv" in op for op in ops)
    assert np.isfinite(size)


def test_windows_read_lazily_and_plan_as_one_plan_over_everything(tmp_path):
    """The run reads a window at a time, and the windows' plans add up to the plan over the whole input
    (skips, replacements and renames across windows included)."""
    from crisislens.runtime.readers import ReadProblem
    from crisislens.runtime.schema import Post
    from crisislens.runtime.store.identity import Identity, fingerprint, place_of, plan
    from crisislens.runtime.store.windows import Tally, windows

    posts = [Post(id=f"p{i % 7}" if i % 5 == 0 else f"q{i}", text=f"text {i}", origin=f"{tmp_path}/a.jsonl:{i}")
             for i in range(40)]
    stored = [Identity("p0", "p0", place_of(posts[0]), "other"), Identity("p0#2", "p0", "/elsewhere", "x"),
              Identity("q1", "q1", place_of(posts[1]), fingerprint(posts[1]))]
    whole = plan(posts, stored)
    read = []

    def source():
        for i, p in enumerate(posts):
            read.append(p.id)
            if i == 3:
                yield ReadProblem("a.jsonl", 99, "bad row", "error")
            yield p

    tally = Tally()
    got = []
    for w in windows(source(), stored, 6, tally):
        assert len(read) <= 6 * (len(got) + 1)  # never more than a window read ahead
        got.append(w)
    assert [p.id for w in got for p in w.posts] == [p.id for p in whole.pending]
    assert tally.skipped == whole.skipped and tally.renamed == whole.renamed and tally.read == 40
    assert set().union(*(w.replacing for w in got)) == whole.replacing
    assert got[0].read_errors == [(None, "a.jsonl:99", "bad row")]


def test_triage_streams_its_input_and_counts_it_first(tiny_bundle, tmp_path):
    """A stream of posts (iter_posts, read errors among them) is stored whole; the progress total
    comes from `total` when the stream has no length."""
    from crisislens.runtime.bundle import load_bundle
    from crisislens.runtime.engine import Engine
    from crisislens.runtime.readers import iter_posts
    from crisislens.runtime.readers.stream import count_posts
    from crisislens.runtime.store import triage

    path = write_posts(tmp_path / "posts.jsonl", 30)
    with path.open("a") as f:
        f.write("{not json\n")
    engine = Engine(load_bundle(tiny_bundle), threads=1)
    calls = []
    with TriageStore(tmp_path / "s.sqlite") as store:
        result = triage(engine, iter_posts([path]), store, batch_size=4, progress=False, workers=2,
                        total=count_posts([path]), on_batch=lambda d, t: calls.append((d, t)))
        assert result.total == 30 and result.predicted == 30 and result.errors == 1
        assert calls[0] == (0, 30) and calls[-1][0] == 31
        assert store.count() == 30 and len(store.errors()) == 1


def test_the_shipped_bundle_skips_its_tower_for_text_only_batches():
    """models/crisislens-student went through `export skip-tower`: every variant's convolutions are
    inside the If's `then` branch, none in the main graph."""
    import onnx

    from crisislens.runtime.bundle import load_bundle

    bundle = load_bundle(Path(__file__).parents[1] / "models" / "crisislens-student")
    for variant in bundle.variants.values():
        graph = onnx.load(str(variant.path)).graph
        ifs = [n for n in graph.node if n.op_type == "If"]
        assert len(ifs) == 1, variant.name
        then = next(a.g for a in ifs[0].attribute if a.name == "then_branch")
        assert any(n.op_type == "Conv" for n in then.node)
        assert not any(n.op_type == "Conv" for n in graph.node)
