"""Triage into SQLite on the tiny bundle: every post stored once, resume, export, read errors kept,
and a real `kill -9` of a running triage process that loses nothing that was committed."""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from crisislens.runtime.cli import EXIT_PROBLEMS, main
from crisislens.runtime.store import TriageStore, bucketed, export_results

FIXTURES = Path(__file__).parent / "fixtures" / "posts"


def write_posts(path: Path, n: int, image: str | None = None) -> Path:
    with path.open("w") as f:
        for i in range(n):
            row = {"id": f"p{i:05d}", "text": f"flood water rising near bridge {i} " * (1 + i % 4)}
            if image and i % 3 == 0:
                row["image"] = image
            f.write(json.dumps(row) + "\n")
    return path


def test_bucketing_groups_by_kind_and_keeps_every_post():
    from crisislens.runtime.schema import Post

    posts = [Post(id=str(i), text="x" * (i % 7), image=Path("a.jpg") if i % 2 else None) for i in range(100)]
    batches = bucketed(posts, 8, chunk=2)
    assert sorted(p.id for b in batches for p in b) == sorted(p.id for p in posts)
    assert all(len({p.image is None for p in b}) == 1 for b in batches)
    assert all(len(b) <= 8 for b in batches)


def test_triage_stores_every_post_and_resumes(tiny_bundle, tmp_path, capsys):
    (tmp_path / "bridge.jpg").write_bytes((FIXTURES / "images" / "bridge.jpg").read_bytes())
    posts = write_posts(tmp_path / "posts.jsonl", 40, image="bridge.jpg")  # paths are relative to the file
    store = tmp_path / "t.sqlite"
    args = ["triage", str(posts), "--bundle", str(tiny_bundle), "--out", str(store), "--batch-size", "8", "--quiet"]
    assert main(args) == 0
    with TriageStore(store) as s:
        rows = list(s.rows())
        assert len(rows) == 40 and len({r["post_id"] for r in rows}) == 40
        assert s.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        with_image = [r for r in rows if r["image"]]
        assert with_image and all(r["prediction"]["patch_rationale"] is not None for r in with_image)
        assert all(r["bundle_sha256"] for r in rows)
    capsys.readouterr()
    assert main(args) == 0  # resume: nothing left to do
    out = capsys.readouterr().out
    assert "0 predicted" in out and "40 already in the store" in out


def test_unreadable_rows_are_recorded_not_dropped(tiny_bundle, tmp_path):
    posts = tmp_path / "posts.jsonl"
    posts.write_text('{"id": "ok", "text": "bridge down"}\n{not json\n{"id": "ok2", "text": "shelter open"}\n')
    store = tmp_path / "t.sqlite"
    code = main(["triage", str(posts), "--bundle", str(tiny_bundle), "--out", str(store), "--quiet"])
    assert code == EXIT_PROBLEMS
    with TriageStore(store) as s:
        assert s.count() == 2
        [err] = s.errors()
        assert "posts.jsonl:2" in err["where"]


def test_a_post_the_model_sees_nothing_of_is_an_error_not_a_prediction(tiny_bundle, tmp_path):
    """No text and a photo that turns out unusable: the model's label would be its prior, so the
    post is recorded as an error (once, however often the run is repeated) until it can be read."""
    from PIL import Image

    folder = tmp_path / "posts"
    folder.mkdir()
    (folder / "a.txt").write_text("bridge down on route 9")
    (folder / "b.jpg").write_bytes(b"junk, not a photo")
    (folder / "c.txt").write_text("\u200b\u200b")  # only invisible characters: nothing left after cleaning
    store = tmp_path / "t.sqlite"
    args = ["triage", str(folder), "--bundle", str(tiny_bundle), "--out", str(store), "--quiet"]
    for _ in range(2):  # the second run is a resume: the same two errors, not four
        assert main(args) == EXIT_PROBLEMS
        with TriageStore(store) as s:
            assert [r["post_id"] for r in s.rows()] == ["a"]
            errors = {e["post_id"]: e for e in s.errors()}
            assert sorted(errors) == ["b", "c"] and len(s.errors()) == 2
    assert errors["b"]["message"].startswith("nothing to classify: no word and no photo reached the model (empty text;")
    assert "image not used" in errors["b"]["message"] and "b.jpg: not an image file" in errors["b"]["message"]
    assert (errors["b"]["where"], errors["c"]["where"]) == (f"{folder}/b.jpg", f"{folder}/c.txt")  # the files
    assert errors["c"]["message"] == ("nothing to classify: no word and no photo reached the model "
                                      "(empty text)")
    Image.new("RGB", (20, 20), (90, 90, 200)).save(folder / "b.jpg", format="JPEG")  # the photo arrives whole
    assert main(args) == EXIT_PROBLEMS  # c still has nothing to classify
    with TriageStore(store) as s:
        assert sorted(r["post_id"] for r in s.rows()) == ["a", "b"]
        assert [e["post_id"] for e in s.errors()] == ["c"]  # b's old error is superseded, kept in the table
        assert s.db.execute("SELECT COUNT(*) FROM errors WHERE post_id = 'b'").fetchone()[0] == 1


def test_export_results_jsonl_and_csv(tiny_bundle, tmp_path):
    store = tmp_path / "t.sqlite"
    assert main(["triage", str(FIXTURES / "posts.jsonl"), "--bundle", str(tiny_bundle), "--out", str(store), "--quiet"]) in (0, 1)
    with TriageStore(store) as s:
        n = s.count()
        assert export_results(s, tmp_path / "r.jsonl") == n
        assert export_results(s, tmp_path / "r.csv") == n
        with pytest.raises(ValueError, match="unknown export format"):
            export_results(s, tmp_path / "r.xml")
    lines = (tmp_path / "r.jsonl").read_text().splitlines()
    assert len(lines) == n and json.loads(lines[0])["prediction"]["label"]
    with (tmp_path / "r.csv").open() as f:
        assert len(list(csv.DictReader(f))) == n


@pytest.mark.parametrize("workers", [[], ["--workers", "3"]], ids=["default", "3-workers"])
def test_kill_9_loses_at_most_the_batch_in_flight(tiny_bundle, tmp_path, workers):
    """A real subprocess is killed with SIGKILL while writing (workers predict, one thread writes);
    the store is intact, every stored prediction is whole, and a rerun completes the rest with
    each post exactly once."""
    n = 3000
    posts = write_posts(tmp_path / "posts.jsonl", n)
    store = tmp_path / "t.sqlite"
    cmd = [sys.executable, "-m", "crisislens.runtime", "triage", str(posts), "--bundle", str(tiny_bundle),
           "--out", str(store), "--batch-size", "4", "--quiet", "--threads", "1", *workers]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    stored = 0
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.3)
        if store.exists():
            try:
                with sqlite3.connect(store, timeout=5) as db:
                    stored = db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]
            except sqlite3.OperationalError:
                continue
            if stored >= 40:
                break
    if proc.poll() is not None:
        pytest.fail(f"triage finished or died before it could be killed (rc {proc.returncode}, {stored} stored)")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with sqlite3.connect(store) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        count = db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]
        assert 0 < count < n
        for (pred,) in db.execute("SELECT prediction FROM predictions"):
            json.loads(pred)  # every stored row is complete
    assert main(["triage", str(posts), "--bundle", str(tiny_bundle), "--out", str(store), "--quiet"]) == 0
    with sqlite3.connect(store) as db:
        ids = [r[0] for r in db.execute("SELECT post_id FROM predictions")]
    assert len(ids) == n and len(set(ids)) == n


def test_backend_choice_is_reported_and_a_missing_tensorrt_is_a_clear_error(tiny_bundle, tmp_path, capsys):
    import importlib.util

    posts = write_posts(tmp_path / "posts.jsonl", 3)
    store = tmp_path / "t.sqlite"
    assert main(["triage", str(posts), "--bundle", str(tiny_bundle), "--out", str(store)]) == 0
    assert "backend: onnxruntime" in capsys.readouterr().err
    if importlib.util.find_spec("tensorrt") is None:
        code = main(["triage", str(posts), "--bundle", str(tiny_bundle), "--out", str(tmp_path / "u.sqlite"),
                     "--backend", "tensorrt"])
        assert code == 2 and "TensorRT is not installed" in capsys.readouterr().err


def test_progress_callback_reports_the_total_before_the_first_batch(tmp_path):
    import types

    from crisislens.runtime.schema import Post, Prediction, TokenScore
    from crisislens.runtime.store import triage

    class FakeEngine:
        bundle = types.SimpleNamespace(sha256="0" * 64)
        variant = types.SimpleNamespace(name="fake")

        def predict(self, posts, classes=None):
            return [Prediction(post_id=p.id, label="not_humanitarian", probabilities={"not_humanitarian": 1.0},
                               token_rationale=(TokenScore(p.text, 0, len(p.text), 0.5),)) for p in posts]

    calls = []
    with TriageStore(tmp_path / "s.sqlite") as s:
        posts = [Post(id=f"a{i}", text="x") for i in range(5)]
        triage(FakeEngine(), posts, s, batch_size=2, progress=False, on_batch=lambda d, t: calls.append((d, t)))
        assert calls[0] == (0, 5) and calls[-1] == (5, 5)
        calls.clear()
        triage(FakeEngine(), posts, s, progress=False, on_batch=lambda d, t: calls.append((d, t)))
        assert calls == [(0, 0)]  # everything already stored


class _BatchLeakingBackend:
    """Scores that move with the whole input tensor, as dynamic INT8's per-tensor activation
    scales do: every output gets the batch's largest token id and its width added."""

    name = "fake"

    def __init__(self):
        self.calls: list[tuple[int, int]] = []

    def run(self, feeds):
        ids = feeds["input_ids"]
        self.calls.append(ids.shape)
        shift = float(ids.max()) * 1e-4 + ids.shape[1] * 1e-3
        b = len(feeds["image_index"])
        logits = np.tile(np.arange(5, dtype=np.float32), (b, 1)) + shift
        tokens = np.full(ids.shape, 0.5 + shift, np.float32) * feeds["attention_mask"]
        patches = np.full((b, 4), 0.1 + shift, np.float32)
        return logits, tokens, patches


def _posts_of_mixed_lengths(tmp_path):
    from PIL import Image

    from crisislens.runtime.schema import Post

    photo = tmp_path / "p.png"
    Image.new("RGB", (12, 9), (200, 30, 30)).save(photo)
    texts = ["water", "roads under water near the old bridge, families on roofs", None, "help needed now please"]
    return [Post(id=f"p{i}", text=t, image=photo if i % 2 == 0 else None) for i, t in enumerate(texts)]


def test_a_batch_dependent_variant_runs_each_post_alone(tiny_bundle, tmp_path):
    """A dynamic-INT8 variant: each post is run alone and cut to its own tokens, so its scores
    are the same in any batch; an FP32 variant keeps whole-batch calls."""
    import shutil

    from crisislens.runtime.bundle import VariantSpec, load_bundle, write_bundle
    from crisislens.runtime.backends.feeds import batch_dependent
    from crisislens.runtime.engine import Engine
    from crisislens.runtime.preprocessing import ImageConfig, TextConfig
    from tests.tiny_bundle import GRID, MAX_LEN, SIZE, minilm_tokenizer

    assert batch_dependent("dynamic") and not any(batch_dependent(q) for q in (None, "weight-only", "static-qdq"))
    source = tmp_path / "model.onnx"
    shutil.copy(load_bundle(tiny_bundle).variant().path, source)
    dyn = write_bundle(tmp_path / "dyn", variants={"int8": VariantSpec(source, "int8", "dynamic", "cpu", {})},
                       tokenizer_json=minilm_tokenizer(), text_config=TextConfig(max_length=MAX_LEN),
                       image_config=ImageConfig(size=SIZE, patch_grid=GRID), model_info={"top_k_patches": 2},
                       command="pytest", default_variant="int8")
    posts = _posts_of_mixed_lengths(tmp_path)

    fake = _BatchLeakingBackend()
    engine = Engine(load_bundle(dyn), backend=fake)
    engine.grid = 2
    together = engine.predict(posts)
    alone = [engine.predict([p])[0] for p in posts]
    assert [p.probabilities for p in together] == [p.probabilities for p in alone]
    assert [p.token_rationale for p in together] == [p.token_rationale for p in alone]
    assert [p.patch_rationale for p in together] == [p.patch_rationale for p in alone]
    assert all(shape[0] == 1 for shape in fake.calls)  # one post per call ...
    widths = {shape[1] for shape in fake.calls}
    assert len(widths) > 1  # ... each cut to its own tokens, not the batch's padded width

    leaky = Engine(load_bundle(tiny_bundle), backend=_BatchLeakingBackend())  # fp32: one call per batch
    leaky.grid = 2
    assert not leaky.per_post
    mixed = leaky.predict(posts)
    assert [p.probabilities for p in mixed] != [leaky.predict([p])[0].probabilities for p in posts]

    # the real tiny model through both paths: same outputs, token scores padded back to the batch width
    real = Engine(load_bundle(dyn))
    prep = real.prepare(posts)
    per_post = real.run(prep.feeds)
    whole = Engine(load_bundle(tiny_bundle)).run(prep.feeds)
    for a, b in zip(per_post, whole):
        assert a.shape == b.shape
    assert np.allclose(per_post[0], whole[0], atol=1e-5)
    n = prep.feeds["attention_mask"].sum(1)
    for i, k in enumerate(n):
        assert np.allclose(per_post[1][i, :k], whole[1][i, :k], atol=1e-5) and not per_post[1][i, k:].any()
