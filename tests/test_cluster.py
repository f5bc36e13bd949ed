"""The cluster path (`crisislens triage --engine ray`, `crisislens store import`): shards cut and
named, Parquet read by the JSONL rules, the bundle checked on the worker, and, on a local Ray
instance with 2 CPUs started once for the module, the same answers as `crisislens triage`,
resume, a worker killed mid-batch, and shards brought into a store the app opens.

The head-node test (`ray start --head`, `--address`) is tests/test_cluster_head.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pa = pytest.importorskip("pyarrow", reason="the cluster extra is not installed: pip install 'crisislens[cluster]'")
pq = pytest.importorskip("pyarrow.parquet", reason="the cluster extra is not installed")

from crisislens.cluster.bundles import bundle_files, worker_bundle  # noqa: E402
from crisislens.cluster.parquet import iter_parquet  # noqa: E402
from crisislens.cluster.shards import (  # noqa: E402
    PREDICTION_SCHEMA,
    RunInfo,
    ShardError,
    check_resume,
    from_row,
    prediction_row,
    shard_prefix,
    split_where,
)
from crisislens.cluster.sources import input_units, shards  # noqa: E402
from crisislens.runtime.bundle import BundleError, load_bundle  # noqa: E402
from crisislens.runtime.cli import EXIT_MISSING_DEPENDENCY, EXIT_PROBLEMS, EXIT_USAGE, main  # noqa: E402
from crisislens.runtime.cli.engines import NEEDS  # noqa: E402
from crisislens.runtime.readers import ReadProblem, iter_posts  # noqa: E402
from crisislens.runtime.schema import Post  # noqa: E402
from crisislens.runtime.settings import DEFAULT_BUNDLE  # noqa: E402
from crisislens.runtime.store import TriageStore  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples" / "posts.jsonl"
FIXTURES = Path(__file__).parent / "fixtures" / "posts"


def write_posts(path: Path, n: int, bad_line: int | None = None) -> Path:
    """`n` made-up text posts as JSON lines; `bad_line` (1-based) is broken JSON."""
    words = "flood bridge closed rescue boat family roof shelter water food help injured road".split()
    with path.open("w") as f:
        for i in range(n):
            if bad_line is not None and i + 1 == bad_line:
                f.write('{"id": "broken", "text": \n')
                continue
            text = " ".join(words[(i + k) % len(words)] for k in range(3 + i % 9))
            f.write(json.dumps({"id": f"p{i:04d}", "text": text}) + "\n")
    return path


# ----------------------------------------------------------------------------- without Ray


def test_shards_cut_after_n_posts_and_keep_errors_with_their_posts():
    items = [Post(id=f"p{i}", text="x") for i in range(5)]
    items.insert(2, ReadProblem("f.jsonl", 3, "malformed JSON"))
    items.insert(0, ReadProblem("f.jsonl", 1, "repaired", "warning", "p0"))  # in its post already: dropped
    parts = list(shards(items, 2))
    assert [[getattr(i, "id", None) or i.message for i in part] for part in parts] == [
        ["p0", "p1"],
        ["malformed JSON", "p2", "p3"],
        ["p4"],
    ]


def test_input_units_are_absolute_and_a_parquet_folder_is_one_unit_a_file(tmp_path, monkeypatch):
    folder = tmp_path / "archive"
    folder.mkdir()
    for name in ("a.parquet", "b.parquet"):
        pq.write_table(pa.table({"id": ["1"], "text": ["t"]}), folder / name)
    write_posts(tmp_path / "posts.jsonl", 2)
    monkeypatch.chdir(tmp_path)
    units = input_units(["posts.jsonl", "archive"])
    assert [(Path(u["path"]).name, u["kind"]) for u in units] == [
        ("posts.jsonl", "posts"),
        ("a.parquet", "parquet"),
        ("b.parquet", "parquet"),
    ]
    assert all(Path(u["path"]).is_absolute() for u in units)
    assert units[0]["prefix"] == shard_prefix(tmp_path / "posts.jsonl") != shard_prefix(tmp_path / "other.jsonl")


def test_parquet_rows_are_read_like_the_same_json_lines(tmp_path):
    shutil.copytree(FIXTURES / "images", tmp_path / "images")
    rows = [
        {"id": "a1", "text": "Water up to the roof", "image": "images/shelter.png", "label": "injured_or_dead_people"},
        {"id": "a2", "text": None, "image": "images/nowhere.jpg", "label": None},  # no text, photo missing
        {"id": "a3", "text": "Bridge down", "image": "../../etc/passwd", "label": None},  # path leaves the folder
        {"id": "a1", "text": "again", "image": None, "label": None},  # duplicate id
        {"id": None, "text": "no id", "image": None, "label": None},
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "posts.parquet")
    with (tmp_path / "posts.jsonl").open("w") as f:
        for row in rows:
            f.write(json.dumps({k: v for k, v in row.items() if v is not None}) + "\n")

    def shape(items, name):
        out = []
        for item in items:
            if isinstance(item, Post):
                out.append(("post", item.id, item.text, item.image, item.label, item.origin.replace(name, "F")))
            else:
                out.append((item.severity, item.line, item.message.replace(name, "F")))
        return out

    from_parquet = shape(iter_parquet(tmp_path / "posts.parquet"), str(tmp_path / "posts.parquet"))
    from_jsonl = shape(iter_posts([tmp_path / "posts.jsonl"]), str(tmp_path / "posts.jsonl"))
    assert from_parquet == from_jsonl
    assert ("post", "a1", "Water up to the roof", (tmp_path / "images/shelter.png").resolve(), "affected_individuals",
            "F:1") in from_parquet
    errors = [p for p in from_parquet if p[0] == "error"]
    assert [e[1] for e in errors] == [2, 4, 5] and "duplicate id" in errors[1][2]


def test_a_damaged_parquet_file_is_one_problem_naming_it(tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 not really")
    problems = list(iter_parquet(bad))
    assert len(problems) == 1 and isinstance(problems[0], ReadProblem)
    assert problems[0].file == str(bad) and "not a readable Parquet file" in problems[0].message


def test_a_shard_row_gives_back_the_post_and_prediction_the_store_would_hold():
    from crisislens.runtime.schema import Prediction, TokenScore

    post = Post(id="p1", text="bridge down", source="s.jsonl", origin="s.jsonl:4", author="@a", label="other_relevant_information")
    probs = {"affected_individuals": 0.1, "infrastructure_and_utility_damage": 0.6, "not_humanitarian": 0.1,
             "other_relevant_information": 0.1, "rescue_volunteering_or_donation_effort": 0.1}
    pred = Prediction("p1", "infrastructure_and_utility_damage", probs, (TokenScore("bridge", 0, 6, 0.91),),
                      ((0.1, 0.2), (0.3, 0.4)), {"preprocess": 1.5, "model": 2.0}, "abc:int8", ("photo small",))
    row = prediction_row(post, pred, "f" * 64, "int8", "host:1")
    table = pa.Table.from_pylist([{**row, "timings_ms": list(row["timings_ms"].items())}], schema=PREDICTION_SCHEMA)
    back_post, back_pred = from_row(table.to_pylist()[0])
    assert back_pred == pred
    assert (back_post.id, back_post.text, back_post.origin, back_post.author, back_post.label) == (
        "p1", "bridge down", "s.jsonl:4", "@a", "other_relevant_information")
    assert split_where("dir/a:b.jsonl:12") == ("dir/a:b.jsonl", 12) and split_where("dir/p1.txt") == ("dir/p1.txt", None)


def test_a_shard_folder_of_another_bundle_or_a_changed_input_is_refused(tmp_path):
    first = RunInfo("a" * 64, "int8-text", None, 100, {"x-1": {"path": "/in/x", "signature": "10:1"}})
    (tmp_path / "run.json").write_text(first.to_json())
    assert check_resume(tmp_path, first).inputs == first.inputs
    with pytest.raises(ShardError, match="bundle_sha256"):
        check_resume(tmp_path, RunInfo("b" * 64, "int8-text", None, 100, first.inputs))
    with pytest.raises(ShardError, match="/in/x: changed since"):
        check_resume(tmp_path, RunInfo("a" * 64, "int8-text", None, 100, {"x-1": {"path": "/in/x", "signature": "11:2"}}))


def test_a_worker_checks_the_bundle_hash_and_falls_back_to_the_carried_copy(tmp_path, monkeypatch):
    bundle = load_bundle(DEFAULT_BUNDLE)
    other = tmp_path / "other"
    shutil.copytree(DEFAULT_BUNDLE, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["created"] = "another day"  # a different bundle: same files, another manifest hash
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="this worker has a bundle with hash"):
        worker_bundle(str(other), bundle.sha256, None)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "cache"))
    found = worker_bundle(str(other), bundle.sha256, bundle_files(bundle))
    assert found.sha256 == bundle.sha256 and found.path.is_relative_to(tmp_path / "cache")
    with pytest.raises(BundleError, match="no bundle there"):
        worker_bundle(str(tmp_path / "absent"), bundle.sha256, None)


def test_cluster_options_need_the_ray_engine_and_a_missing_extra_exits_3(tmp_path, monkeypatch, capsys):
    posts = write_posts(tmp_path / "p.jsonl", 2)
    assert main(["triage", str(posts), "--parquet", str(tmp_path / "s"), "--quiet"]) == EXIT_USAGE
    assert "--parquet: only with --engine ray" in capsys.readouterr().err
    monkeypatch.setitem(NEEDS, "ray", ("no_such_ray", "cluster"))
    assert main(["triage", str(posts), "--engine", "ray", "--parquet", str(tmp_path / "s")]) == EXIT_MISSING_DEPENDENCY
    assert "pip install 'crisislens[cluster]'" in capsys.readouterr().err


# ----------------------------------------------------------------------------- on a local Ray


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="the cluster extra is not installed: pip install 'crisislens[cluster]'")
    ray.init(address="local", num_cpus=2, object_store_memory=200 * 1024 * 1024, include_dashboard=False,
             log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def same_posts(local_ray, tmp_path_factory):
    """The samples (30 posts with photos) and 150 text posts with one broken line, triaged once
    plainly into a store and once on Ray into shards of 50 posts (4 of them)."""
    work = tmp_path_factory.mktemp("cluster")
    text = write_posts(work / "text.jsonl", 151, bad_line=77)
    inputs = [str(SAMPLES), str(text)]
    store = work / "plain.sqlite"
    assert main(["triage", *inputs, "--store", str(store), "--quiet"]) == EXIT_PROBLEMS  # the broken line
    shards_dir = work / "shards"
    args = ["triage", *inputs, "--engine", "ray", "--parquet", str(shards_dir), "--workers", "2", "--shard-size", "50",
            "--quiet"]
    assert main(args) == EXIT_PROBLEMS
    return inputs, store, shards_dir, args


def _by_id(shards_dir: Path) -> dict[str, dict]:
    rows = pq.read_table(shards_dir / "predictions").to_pylist()
    assert len(rows) == len({r["post_id"] for r in rows}), "a post written twice"
    return {r["post_id"]: r for r in rows}


def test_ray_gives_the_same_labels_and_rationale_scores_as_plain_triage(same_posts):
    _, store, shards_dir, _ = same_posts
    with TriageStore(store, readonly=True) as s:
        plain = {r["post_id"]: r["prediction"] for r in s.rows()}
        plain_errors = {(e["where"], e["message"]) for e in s.errors()}
    cluster = _by_id(shards_dir)
    assert set(cluster) == set(plain) and len(plain) == 180
    sha = load_bundle(DEFAULT_BUNDLE).sha256
    photos = 0
    for pid, ref in plain.items():
        row = cluster[pid]
        assert row["label"] == ref["label"], pid
        assert row["probabilities"] == pytest.approx(ref["probabilities"], abs=1e-6)
        assert [w["word"] for w in row["rationale"]] == [t["text"] for t in ref["token_rationale"]]
        assert [w["score"] for w in row["rationale"]] == pytest.approx([t["score"] for t in ref["token_rationale"]],
                                                                       abs=1e-4)
        if ref["patch_rationale"] is not None:
            photos += 1
            assert sum(row["patch_grid"], []) == pytest.approx(sum(ref["patch_rationale"], []), abs=1e-5)
        assert row["bundle_sha256"] == sha
    assert photos == 30
    errors = pq.read_table(shards_dir / "errors").to_pylist()
    assert [(e["file"], e["line"]) for e in errors] == [(same_posts[0][1], 77)]
    assert {(f"{e['file']}:{e['line']}", e["message"]) for e in errors} == plain_errors


def test_a_rerun_skips_written_shards_and_redoes_a_missing_one(same_posts, capsys):
    _, _, shards_dir, args = same_posts
    files = sorted((shards_dir / "predictions").glob("*.parquet"))
    assert len(files) == 4  # samples: 1 shard; 150 posts and a broken line: 3 (the broken line in the 2nd)
    before = {f.name: f.stat().st_mtime_ns for f in files}
    capsys.readouterr()
    assert main(args) == 0  # nothing left to do: no error of this run
    out = capsys.readouterr().out
    assert out.startswith("0 predicted") and "4 already there" in out
    assert {f.name: f.stat().st_mtime_ns for f in files} == before
    files[-1].unlink()
    assert main(args) == 0
    assert files[-1].is_file() and len(_by_id(shards_dir)) == 180
    assert {f.name: f.stat().st_mtime_ns for f in files[:-1]} == {k: v for k, v in before.items() if k != files[-1].name}


def test_a_worker_killed_mid_batch_is_redone_and_nothing_is_duplicated(local_ray, tmp_path):
    from crisislens.cluster.run import ClusterJob, run_job

    posts = write_posts(tmp_path / "posts.jsonl", 120)
    marker = tmp_path / "crashed"
    result = run_job(ClusterJob(inputs=[str(posts)], out=tmp_path / "shards", bundle=DEFAULT_BUNDLE, actors=2,
                                shard_size=40, crash_once=str(marker)))
    assert marker.is_file(), "no worker was killed: the test tested nothing"
    assert result.predicted == 120 and result.errors == 0 and result.shards_written == 3
    assert sorted(_by_id(tmp_path / "shards")) == [f"p{i:04d}" for i in range(120)]


def test_store_import_brings_shards_into_a_store_the_app_opens(same_posts, tmp_path, capsys):
    _, plain_store, shards_dir, _ = same_posts
    store = tmp_path / "review.sqlite"
    assert main(["store", "import", str(shards_dir), "--store", str(store)]) == 0
    assert capsys.readouterr().out.startswith("180 prediction(s) imported from 4 shard(s)")
    assert main(["store", "import", str(shards_dir), "--store", str(store)]) == 0  # again: nothing added
    assert capsys.readouterr().out.startswith("0 prediction(s) imported from 4 shard(s), 180 already in the store")
    with TriageStore(store) as s, TriageStore(plain_store, readonly=True) as p:
        items = {i.post_id: i for i in s.items()}
        ref = {i.post_id: i for i in p.items()}
        assert set(items) == set(ref)
        for pid, item in items.items():
            assert item.prediction.label == ref[pid].prediction.label
            assert (item.text, item.image, item.origin) == (ref[pid].text, ref[pid].image, ref[pid].origin)
        assert [(e["where"], e["message"]) for e in s.errors()] == [(e["where"], e["message"]) for e in p.errors()]
        assert s.meta()["bundle_sha256"] == load_bundle(DEFAULT_BUNDLE).sha256
    top = tmp_path / "top.sqlite"
    assert main(["store", "import", str(shards_dir), "--store", str(top), "--top", "7"]) == 0
    with TriageStore(top) as t:
        kept = sorted(i.priority for i in t.items())
        assert len(kept) == 7 and min(kept) >= sorted(i.priority for i in items.values())[-7] - 1e-12
    assert main(["store", "import", str(shards_dir), "--store", str(top), "--label", "nothing"]) == EXIT_USAGE
