"""Student v2 pieces on tiny models: the photo head for posts without words, the teacher's word
scores carried from its word pieces to the student's, and the photo evidence metrics."""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from crisislens.distill.student import load_student, save_student  # noqa: E402
from crisislens.distill.student_v2 import map_token_scores  # noqa: E402
from crisislens.evaluation import photos  # noqa: E402
from tests.test_student import tiny_student  # noqa: E402
from tests.test_teacher import batch  # noqa: E402


def test_a_photo_without_words_gets_its_own_patch_scores_and_its_label_from_the_photo():
    blind, seeing = tiny_student().eval(), tiny_student(photo_head=True).eval()
    seeing.load_state_dict(blind.state_dict(), strict=False)  # same weights but the new head
    inputs = batch()  # post 0: words + photo, 1: words, 2: photo only
    with torch.no_grad():
        a, b = blind(inputs), seeing(inputs)
        assert float(a.patch_scores[2].abs().max()) == 0.0  # v1: nothing to transfer from
        assert float(b.patch_scores[2].min()) > 0.0 and int(b.patch_rationale[2].sum()) == 2
        # with words the patches still come from the transfer, unchanged
        assert torch.allclose(a.patch_scores[:2], b.patch_scores[:2])
        assert torch.allclose(a.logits[:2], b.logits[:2], atol=1e-6)
        other = batch()
        other.image_features = inputs.image_features.clone()
        other.image_features[2] = torch.randn(9, 16) * 3
        blind_again, seeing_again = blind(other), seeing(other)
    assert torch.allclose(a.logits[2], blind_again.logits[2])  # v1: the class prior whatever the photo
    assert not torch.allclose(b.logits[2], seeing_again.logits[2])  # v2: the photo decides


def test_photo_head_trains_through_the_class_and_travels_in_the_checkpoint(tmp_path):
    model = tiny_student(photo_head=True).train()
    out = model(batch())
    torch.nn.functional.cross_entropy(out.logits[2:], torch.tensor([1])).backward()
    assert model.photo_head.weight.grad is not None and float(model.photo_head.weight.grad.abs().sum()) > 0
    save_student(model, tmp_path / "s.pt")
    loaded = load_student(tmp_path / "s.pt")
    assert loaded.config.photo_head and torch.equal(loaded.photo_head.weight, model.photo_head.weight)


def test_teacher_word_scores_move_to_the_student_pieces_by_character_overlap():
    # teacher pieces: <s> "flood"(0-5) "ed"(5-7) " road"(8-12) </s>; student: [CLS] "flooded"(0-7) "road"(8-12) [SEP]
    teacher = [(0, 0), (0, 5), (5, 7), (8, 12), (0, 0)]
    scores = np.array([0.9, 0.2, 0.8, 0.1, 0.9])
    student = [(0, 0), (0, 7), (8, 12), (0, 0)]
    assert map_token_scores(scores, teacher, student).tolist() == pytest.approx([0.0, 0.8, 0.1, 0.0])


def test_top_k_iou_and_greying_out_cells():
    sets = photos.top_k(np.array([[0.9, 0.1, 0.8, 0.7], [0.1, 0.9, 0.8, 0.0]]), k=2)
    assert sets == [frozenset({0, 2}), frozenset({1, 2})]
    assert photos.iou(*sets) == pytest.approx(1 / 3)
    pixels = np.ones((3, 6, 6), np.float32)
    out = photos.grey_out(pixels, [0, 8], grid=3)
    assert out[:, :2, :2].sum() == 0 and out[:, 4:, 4:].sum() == 0 and out.sum() == 3 * (36 - 8)
    assert pixels.sum() == 3 * 36  # the input is left as it was
    varied = np.random.default_rng(0).normal(size=(3, 6, 6)).astype(np.float32)
    flat = photos.grey_out(varied, [0], grid=3, fill="cell-mean")
    assert np.allclose(flat[:, :2, :2], varied[:, :2, :2].mean(axis=(1, 2), keepdims=True))  # colour kept, shapes gone
    assert np.array_equal(flat[:, 2:, :], varied[:, 2:, :])
    with pytest.raises(ValueError, match="fill 'blur'"):
        photos.grey_out(varied, [0], grid=3, fill="blur")
    same = np.tile(np.array([[0.9, 0.8, 0.1, 0.0]]), (10, 1))
    assert photos.unrelated_iou(same, pairs=20, k=2) == 1.0


def test_deletion_compares_the_top_patches_with_random_ones():
    """A fake model whose class-0 logit is the sum of the pixels of patch 0 and 1: greying out
    the top patches drops it; random patches rarely do."""
    grid = 3

    def run(feeds):
        px = feeds["pixel_values"]
        logit = px[:, :, :2, :4].sum(axis=(1, 2, 3))
        b = len(feeds["input_ids"])
        logits = np.zeros((b, 5))
        logits[:, 0] = logit[np.maximum(feeds["image_index"], 0)] / 10
        patches = np.tile(np.array([0.9, 0.8, 0.1, 0, 0, 0, 0, 0, 0.2]), (b, 1))
        return logits, np.zeros((b, 4)), patches

    engine = SimpleNamespace(grid=grid, temperature=1.0, run=run)
    feeds = {"input_ids": np.ones((2, 4), np.int64), "attention_mask": np.ones((2, 4), np.int64),
             "pixel_values": np.ones((2, 3, 6, 6), np.float32), "image_index": np.array([0, 1])}
    logits, _, patches = run(feeds)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    scored = photos.Scored(probs, patches, np.array([True, True]), [feeds])
    d = photos.deletion(engine, scored, k=2, draws=20)
    assert d["posts"] == 2 and d["mean_drop_top_k"] > 0 and d["ratio"] > 3


def test_token_deletion_removes_the_top_patches_through_patch_keep():
    """A fake model whose class-0 logit counts the kept patches among 0 and 1: removing the top
    patches as tokens drops it, random ones rarely do; a graph without patch_keep gets a reason."""
    grid = 3

    def run(feeds):
        b = len(feeds["input_ids"])
        keep = feeds.get("patch_keep", np.ones((b, grid * grid), np.int64))
        logits = np.zeros((b, 5))
        logits[:, 0] = keep[:, :2].sum(1) * (feeds["image_index"] >= 0)
        patches = np.tile(np.array([0.9, 0.8, 0.1, 0, 0, 0, 0, 0, 0.2]), (b, 1)) * keep
        return logits, np.zeros((b, 4)), patches

    backend = SimpleNamespace(input_names=["input_ids", "attention_mask", "pixel_values", "image_index", "patch_keep"])
    engine = SimpleNamespace(grid=grid, temperature=1.0, run=run, backend=backend)
    feeds = {"input_ids": np.ones((3, 4), np.int64), "attention_mask": np.ones((3, 4), np.int64),
             "pixel_values": np.ones((2, 3, 6, 6), np.float32), "image_index": np.array([0, -1, 1])}
    logits, _, patches = run(feeds)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    scored = photos.Scored(probs, patches, feeds["image_index"] >= 0, [feeds])
    d = photos.deletion(engine, scored, k=2, draws=20, fill="token")
    assert d["posts"] == 2 and d["fill"] == "token" and d["ratio"] > 3
    assert d["mean_drop_top_k"] == pytest.approx(probs[0, 0] - 0.2)  # both removed: all five logits 0
    backend.input_names = backend.input_names[:4]
    old = photos.deletion(engine, scored, k=2, fill="token")
    assert old["ratio"] is None and "no patch_keep" in old["note"]


def test_event_photos_reads_the_label_file_and_names_a_bad_row(tmp_path):
    images = tmp_path / "images" / "aidr" / "kerala"
    images.mkdir(parents=True)
    (images / "a.jpg").write_bytes(b"x")
    rows = [{"relpath": "aidr/kerala/a.jpg", "event": "kerala_flood_2018", "medic_humanitarian": "not_humanitarian"},
            {"relpath": "aidr/other/b.jpg", "event": "other", "medic_humanitarian": "not_humanitarian"}]
    path = tmp_path / "images" / "image_labels.tsv"
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter="\t")
        w.writeheader()
        w.writerows(rows)
    posts = photos.event_photos(tmp_path, "kerala_flood_2018")
    assert [(p.id, p.label, p.text) for p in posts] == [("aidr/kerala/a.jpg", "not_humanitarian", "")]
    with path.open("a") as f:
        f.write("aidr/kerala/a.jpg\tkerala_flood_2018\tcute_cats\n")
    with pytest.raises(ValueError, match=r"image_labels.tsv:4: unknown MEDIC label 'cute_cats'"):
        photos.event_photos(tmp_path, "kerala_flood_2018")


@pytest.mark.parametrize("local_pool", [False, True])
def test_the_photo_head_exports_to_onnx_and_matches_pytorch(tmp_path, local_pool):
    pytest.importorskip("onnxscript")
    transformers = pytest.importorskip("transformers")
    from crisislens.distill.student import RationaleStudent, truncated_bert
    from crisislens.export.onnx_export import compare, ort_session, run_ort, run_torch
    from tests.test_export import feeds
    from tests.test_student import PixelTower, tiny_student_config
    from tests.tiny_bundle import MAX_LEN, SIZE

    torch.manual_seed(0)
    bert = transformers.BertModel(transformers.BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                                                          num_attention_heads=4, intermediate_size=64,
                                                          max_position_embeddings=64))
    model = RationaleStudent(tiny_student_config(photo_head=True, local_patch_pool=local_pool), truncated_bert(bert, 2), PixelTower()).eval()
    from crisislens.export.onnx_export import export_onnx

    path = export_onnx(model, tmp_path / "m.onnx", max_length=MAX_LEN, image_size=SIZE)
    rng = np.random.default_rng(3)
    batches = [feeds(rng, 3, 2, [True] * 3, text=False), feeds(rng, 4, 9, [True, False, True, False])]
    session = ort_session(path)
    ref = [run_torch(model, f) for f in batches]
    cand = [run_ort(session, f) for f in batches]
    parity = compare(ref, cand, batches, ["image_only", "mixed"], top_k=2)
    assert parity.max_abs_logit_diff < 1e-4 and parity.patch_topk_agreement == 1.0
    assert float(cand[0][2].min()) > 0.0  # photo-only posts: patch scores from the photo head


def test_export_builds_only_the_variants_asked_for_and_refuses_unknown_ones():
    from crisislens.export.pipeline import ExportConfig

    assert [v.name for v in ExportConfig(variants=("int8-text",)).chosen()] == ["fp32", "int8-text"]
    assert len(ExportConfig().chosen()) > 2
    with pytest.raises(ValueError, match="unknown export variant"):
        ExportConfig(variants=("int9",)).chosen()


def test_highlighted_words_follow_the_models_rule():
    from crisislens.distill.bundle_rationales import content_positions, highlighted

    assert highlighted(np.array([0.9, 0.2, 0.6, 0.1])).tolist() == [True, False, True, False]
    assert highlighted(np.array([0.1, 0.3, 0.2])).tolist() == [False, True, True]  # at least 2
    assert highlighted(np.array([0.1])).tolist() == [True]
    ids = np.array([101, 2000, 2001, 102, 0])
    assert content_positions(ids, np.array([1, 1, 1, 1, 0])).tolist() == [1, 2]


def test_settings_reach_the_config_its_loss_and_its_model():
    from crisislens.distill.student_v2 import StudentV2Config, apply_settings

    config = apply_settings(StudentV2Config(), ["humaid_per_epoch=0", "loss.token_human=0.1",
                                                "model.frozen_text_layers=6", "teacher_run="])
    assert config.humaid_per_epoch == 0 and config.loss.token_human == 0.1
    assert config.model.frozen_text_layers == 6 and config.teacher_run == ""
    for bad, says in (("epochs", "FIELD=VALUE"), ("nope=1", "no field 'nope'"), ("epochs=six", "not a int"),
                      ("optimizer.lr=1", "not loss or model")):
        with pytest.raises(ValueError, match=says):
            apply_settings(StudentV2Config(), [bad])


def test_source_offsets_shift_only_the_training_loss_and_start_from_the_class_mix():
    from crisislens.distill import data as D
    from crisislens.distill.student_v2 import OFFSET_SOURCES, Rows, prior_offsets

    plain, offset = tiny_student().eval(), tiny_student(source_offsets=len(OFFSET_SOURCES)).eval()
    assert offset.load_state_dict(plain.state_dict(), strict=False).missing_keys == ["source_offset"]
    with torch.no_grad():
        offset.source_offset.fill_(3.0)
        inputs = batch()
        assert torch.equal(plain(inputs).logits, offset(inputs).logits)  # not in the forward pass (nor the export)

    def rows(source: str, labels: dict[str, int]) -> list:
        return [D.Example(id=f"{source}{i}", text="x", image=None, label=name, source=source)
                for name, n in labels.items() for i in range(n)]

    groups = {"crisismmd:train": rows("crisismmd", {"not_humanitarian": 98, "affected_individuals": 1}),
              "humaid:train": rows("humaid", {"not_humanitarian": 49, "affected_individuals": 50}),
              "crisismmd:test": rows("crisismmd", {"affected_individuals": 500})}  # not a training group
    start = prior_offsets(Rows(groups, []))
    aff, nh = 0, 4  # LABEL_NAMES order
    assert start.shape == (len(OFFSET_SOURCES), 5)
    assert float(start[0, aff]) == pytest.approx(np.log(51 / 104) - np.log(2 / 104))  # add-one smoothed
    assert float(start[0, nh]) == pytest.approx(np.log(50 / 104) - np.log(99 / 104))
    assert torch.equal(start[1:], torch.zeros(2, 5))  # sources without rows: no offset


def test_humaid_rows_can_be_drawn_from_chosen_classes_only():
    from crisislens.distill import data as D
    from crisislens.distill.student_v2 import Rows, StudentV2Config

    def rows(source: str, labels: dict[str, int]) -> list:
        return [D.Example(id=f"{source}{name}{i}", text="x", image=None, label=name, source=source)
                for name, n in labels.items() for i in range(n)]

    groups = {"crisismmd:train": rows("crisismmd", {"not_humanitarian": 5}), "rationales:train": [],
              "images:train": [], "humaid:train": rows("humaid", {"affected_individuals": 3, "not_humanitarian": 40})}
    drawn = Rows(groups, []).train_epoch(StudentV2Config(humaid_per_epoch=10, humaid_labels="affected_individuals"), 0)
    assert sorted(e.label for e in drawn if e.source == "humaid") == ["affected_individuals"] * 3
    assert len([e for e in Rows(groups, []).train_epoch(StudentV2Config(humaid_per_epoch=10), 0)
                if e.source == "humaid"]) == 10
    unlabelled = Rows(groups, []).train_epoch(StudentV2Config(humaid_per_epoch=10, humaid_gold=False), 0)
    assert [e.label for e in unlabelled if e.source == "humaid"] == [None] * 10  # the teacher's reading only
    assert all(e.label for e in unlabelled if e.source == "crisismmd")
    with pytest.raises(ValueError, match="unknown class injured"):
        Rows(groups, []).train_epoch(StudentV2Config(humaid_labels="injured"), 0)

    # Without their own labels, HumAID rows the teacher did not read would carry no target: left out.
    from crisislens.distill.features import example_key
    from crisislens.distill.student_v2 import TeacherV2

    read = groups["humaid:train"][:4]
    teacher = TeacherV2({example_key(e): i for i, e in enumerate(read)}, np.zeros((4, 5), np.float32), {}, {})
    narrowed = Rows(groups, []).read_by(teacher)
    assert narrowed.groups["humaid:train"] == read and narrowed.groups["crisismmd:train"] == groups["crisismmd:train"]
    drawn = narrowed.train_epoch(StudentV2Config(humaid_per_epoch=10, humaid_gold=False), 0)
    assert sorted(e.id for e in drawn if e.source == "humaid") == sorted(e.id for e in read)


def test_the_probe_teacher_writes_a_run_the_student_reads_with_out_of_fold_training_rows(tmp_path, monkeypatch):
    pytest.importorskip("sklearn")
    from crisislens.distill import data as D
    from crisislens.distill import probe_teacher
    from crisislens.distill.student_v2 import TeacherV2
    from crisislens.runtime.labels import LABEL_NAMES

    calls: list[int] = []

    def fake_embed(name: str, texts: list[str]) -> np.ndarray:  # a class direction per keyword, plus noise
        calls.append(len(texts))
        out = np.random.default_rng(len(texts)).normal(0, 0.3, (len(texts), 8)).astype(np.float32)
        for i, t in enumerate(texts):
            out[i, LABEL_NAMES.index(t.split()[0])] += 2.0
        return out

    monkeypatch.setattr(probe_teacher, "embed", fake_embed)

    def rows(source: str, n: int, split: str) -> list:
        return [D.Example(id=f"{source}-{split}-{name}-{i}", text=f"{name} post {i}", image=None, label=name,
                          source=source) for name in LABEL_NAMES for i in range(n)]

    groups = {"crisismmd:train": rows("crisismmd", 10, "train"), "crisismmd:dev": rows("crisismmd", 4, "dev"),
              "crisismmd:test": rows("crisismmd", 4, "test"), "humaid:train": rows("humaid", 3, "train"),
              "rationales:train": []}
    summary = probe_teacher.build(groups, tmp_path / "run", tmp_path / "cache", encoder="minilm", folds=5)
    assert summary["crisismmd:test"]["macro_f1"] > 0.9 and summary["rows"]["other training rows"] == 15
    teacher = TeacherV2.load(tmp_path / "run", [], None, tmp_path / "cache")  # no word scores: no encoder needed
    assert not teacher.tokens and not teacher.patches
    assert len(teacher.index) == 50 + 15 and teacher.logits.shape == (65, 5)
    assert np.allclose(np.exp(teacher.logits).sum(1), 1, atol=1e-4)  # log-probabilities
    first = teacher.logits[teacher.index["crisismmd:crisismmd-train-affected_individuals-0"]]
    assert int(first.argmax()) == LABEL_NAMES.index("affected_individuals")
    # A rerun reads the embeddings from the cache; a bad setting is refused by name.
    probe_teacher.build(groups, tmp_path / "run2", tmp_path / "cache", encoder="minilm", folds=5)
    assert calls == [50 + 20 + 20 + 15]
    with pytest.raises(ValueError, match="folds 1"):
        probe_teacher.build(groups, tmp_path / "run3", tmp_path / "cache", encoder="minilm", folds=1)


def test_the_probe_teacher_can_fit_humaid_labels_beside_crisismmd_and_scores_crisislex(tmp_path, monkeypatch):
    pytest.importorskip("sklearn")
    from crisislens.distill import data as D
    from crisislens.distill import probe_teacher
    from crisislens.runtime.labels import LABEL_NAMES

    def fake_embed(name: str, texts: list[str]) -> np.ndarray:
        out = np.random.default_rng(len(texts)).normal(0, 0.3, (len(texts), 8)).astype(np.float32)
        for i, t in enumerate(texts):
            out[i, LABEL_NAMES.index(t.split()[0])] += 2.0
        return out

    monkeypatch.setattr(probe_teacher, "embed", fake_embed)

    def rows(source: str, n: int, split: str, relabel: dict[str, str] | None = None) -> list:
        relabel = relabel or {}
        return [D.Example(id=f"{source}-{split}-{name}-{i}", text=f"{name} post {i}", image=None,
                          label=relabel.get(name, name), source=source) for name in LABEL_NAMES for i in range(n)]

    # HumAID (and CrisisLexT26) call what CrisisMMD calls other_relevant_information affected_individuals.
    other_is_affected = {"other_relevant_information": "affected_individuals"}
    groups = {"crisismmd:train": rows("crisismmd", 10, "train"), "crisismmd:dev": rows("crisismmd", 4, "dev"),
              "crisismmd:test": rows("crisismmd", 4, "test"),
              "humaid:train": rows("humaid", 12, "train", other_is_affected),
              "rationales:train": rows("rationales", 2, "train"),
              "crisislex:all": rows("crisislex_t26", 6, "all", other_is_affected)}
    alone = probe_teacher.build(groups, tmp_path / "a", tmp_path / "cache", encoder="minilm", crisislex=20)
    mixed = probe_teacher.build(groups, tmp_path / "b", tmp_path / "cache", encoder="minilm", crisislex=20,
                                humaid_weight=5.0)
    assert alone["rows"] == {"crisismmd:train (out of fold)": 50, "humaid:train with its labels (out of fold)": 0,
                             "other training rows": 70}
    assert mixed["rows"] == {"crisismmd:train (out of fold)": 50, "humaid:train with its labels (out of fold)": 60,
                             "other training rows": 10}
    key = "crisislex_t26 sample of 20 (zero-shot)"
    assert mixed[key]["accuracy"] > alone[key]["accuracy"]
    keys = json.loads((tmp_path / "b" / "keys.json").read_text())
    logits = np.load(tmp_path / "b" / "outputs-logits.npz")["logits"]
    assert len(keys) == len(logits) == 120 and keys[50].startswith("humaid:")
    with pytest.raises(ValueError, match="humaid_weight -1"):
        probe_teacher.build(groups, tmp_path / "c", tmp_path / "cache", encoder="minilm", humaid_weight=-1)
    # A seeded sample of HumAID: only those posts are embedded, fitted and written.
    sampled = probe_teacher.build(groups, tmp_path / "d", tmp_path / "cache", encoder="minilm", humaid_weight=5.0,
                                  humaid=7)
    assert sampled["rows"]["humaid:train with its labels (out of fold)"] == 7 and sampled["humaid_sample"] == 7
    keys_d = [k for k in json.loads((tmp_path / "d" / "keys.json").read_text()) if k.startswith("humaid:")]
    again = probe_teacher.sample_humaid(groups, 7, 13)["humaid:train"]
    assert sorted(keys_d) == sorted(f"humaid:{e.id}" for e in again) and len(set(keys_d)) == 7
    assert probe_teacher.sample_humaid(groups, 0, 13)["humaid:train"] == groups["humaid:train"]
    with pytest.raises(ValueError, match="humaid -2"):
        probe_teacher.build(groups, tmp_path / "e", tmp_path / "cache", encoder="minilm", humaid=-2)


def test_the_probe_teacher_reads_the_photo_where_the_words_say_little(tmp_path, monkeypatch):
    pytest.importorskip("sklearn")
    from crisislens.distill import data as D
    from crisislens.distill import probe_teacher
    from crisislens.runtime.labels import LABEL_NAMES

    # Half the posts say their class in words; the other half say nothing useful ("vague ...")
    # and carry their class in the photo only.
    def fake_embed(name: str, texts: list[str]) -> np.ndarray:
        out = np.random.default_rng(len(texts)).normal(0, 0.3, (len(texts), 8)).astype(np.float32)
        for i, t in enumerate(texts):
            if t.split()[0] in LABEL_NAMES:
                out[i, LABEL_NAMES.index(t.split()[0])] += 2.0
        return out

    monkeypatch.setattr(probe_teacher, "embed", fake_embed)
    root = tmp_path / "data"
    keys, grids = [], []
    rng = np.random.default_rng(0)

    def rows(split: str, n: int) -> list:
        out = []
        for name in LABEL_NAMES:
            for i in range(n):
                rel = f"crisismmd/{split}-{name}-{i}.jpg"
                grid = rng.normal(0, 0.3, (49, 16))
                grid[:, LABEL_NAMES.index(name)] += 1.5
                keys.append(rel)
                grids.append(grid)
                text = f"{name} post" if i % 2 == 0 else "vague post"
                out.append(D.Example(id=f"{split}-{name}-{i}", text=f"{text} {i}", image=str(root / "images" / rel),
                                     label=name, source="crisismmd", meta={"label_image": name}))
        return out

    groups = {"crisismmd:train": rows("train", 12), "crisismmd:dev": rows("dev", 6), "crisismmd:test": rows("test", 6),
              "humaid:train": [], "rationales:train": []}
    features = tmp_path / "photos-lite0.npz"
    np.savez(features, keys=np.array(keys), grid=np.stack(grids).astype(np.float16), ok=np.ones(len(keys), bool))
    text_only = probe_teacher.build(groups, tmp_path / "t", tmp_path / "cache", encoder="minilm", folds=3)
    both = probe_teacher.build(groups, tmp_path / "p", tmp_path / "cache", encoder="minilm", folds=3,
                               photos=features, root=root)
    photos = both["photos"]
    assert photos["weight"] > 0 and photos["crisismmd:train rows given the fused reading"] == 60
    test = photos["crisismmd:test posts with a photo"]
    assert test["n"] == 30 and test["text + photo"]["macro_f1"] > test["text"]["macro_f1"] + 0.2
    assert test["text + photo"]["log_loss"] < test["text"]["log_loss"]
    assert test["text"]["macro_f1"] == pytest.approx(text_only["crisismmd:test"]["macro_f1"])  # text probe unchanged
    # A training row whose words say nothing now gets its photo's class as the teacher's reading.
    keys_p = json.loads((tmp_path / "p" / "keys.json").read_text())
    fused = np.load(tmp_path / "p" / "outputs-logits.npz")["logits"]
    plain = np.load(tmp_path / "t" / "outputs-logits.npz")["logits"]
    vague = [i for i, k in enumerate(keys_p) if int(k.rsplit("-", 1)[1]) % 2]
    right = [LABEL_NAMES.index(keys_p[i].split("-")[1]) for i in vague]
    assert np.mean(fused[vague].argmax(1) == right) > np.mean(plain[vague].argmax(1) == right) + 0.3
    assert np.allclose(np.exp(fused).sum(1), 1, atol=1e-4)
    with pytest.raises(ValueError, match="no such photo feature file"):
        probe_teacher.build(groups, tmp_path / "x", tmp_path / "cache", encoder="minilm", photos=tmp_path / "none.npz",
                            root=root)
    assert len(np.load(tmp_path / "p" / "outputs-patches.npz")["photo_rows"]) == 0  # no patch targets unless asked
    with pytest.raises(ValueError, match="need the photo features"):
        probe_teacher.build(groups, tmp_path / "y", tmp_path / "cache", encoder="minilm", patch_targets=True)
    maps = probe_teacher.build(groups, tmp_path / "m", tmp_path / "cache", encoder="minilm", folds=3,
                               photos=features, root=root, patch_targets=True)
    assert maps["photos"]["patch targets"]["rows"] == 60
    z = np.load(tmp_path / "m" / "outputs-patches.npz")
    assert z["patches"].shape == (60, 49) and float(z["patches"].min()) == 0.0 and float(z["patches"].max()) == 1.0
    assert sorted(z["photo_rows"].tolist()) == z["photo_rows"].tolist()
    # Every labelled training photo also gets a target for itself read alone, by photo key, for
    # its own photo label: the class's evidence (channel) is in every cell, so no cell is empty.
    alone = np.load(tmp_path / "m" / "outputs-photo-patches.npz")
    assert sorted(alone["keys"].tolist()) == sorted(k for k in keys if k.startswith("crisismmd/train-"))
    assert alone["patches"].shape == (60, 49) and float(alone["patches"].max()) == 1.0
    assert maps["photos"]["patch targets"]["photos alone"] == 60
    assert not (tmp_path / "p" / "outputs-photo-patches.npz").exists()
    from crisislens.distill.student_v2 import TeacherV2

    teacher = TeacherV2.load(tmp_path / "m", [], None, tmp_path / "cache")
    assert set(teacher.photo_patches) == set(alone["keys"].tolist())
    assert TeacherV2.load(tmp_path / "p", [], None, tmp_path / "cache").photo_patches == {}


def test_patch_targets_are_the_photo_probes_evidence_cell_by_cell():
    """Photos whose class shows in five cells of their own: the class map's top five are those
    cells, so unrelated photos get different targets."""
    pytest.importorskip("sklearn")
    from crisislens.distill import probe_teacher
    from crisislens.runtime.labels import LABEL_NAMES

    rng = np.random.default_rng(1)
    cells, labels, where = [], [], []
    for i in range(200):
        c = i % len(LABEL_NAMES)
        grid = rng.normal(0, 0.3, (49, 8))
        chosen = rng.choice(49, 5, replace=False)
        grid[chosen, c] += 3.0
        cells.append(grid)
        labels.append(LABEL_NAMES[c])
        where.append(frozenset(chosen.tolist()))
    cells_ = np.stack(cells)
    pooled = cells_.mean(1)
    probe = probe_teacher.fit_photo_probe(pooled[:150], labels[:150], pooled[150:], labels[150:])
    maps = probe_teacher.class_maps(probe, cells_[150:], [LABEL_NAMES.index(y) for y in labels[150:]])
    tops = [frozenset(np.argsort(-m)[:5].tolist()) for m in maps]
    assert np.mean([a == b for a, b in zip(tops, where[150:])]) > 0.9
    assert photos.unrelated_iou(maps) < 0.2


def test_probe_embeddings_are_cached_chunk_by_chunk_so_a_killed_run_resumes(tmp_path, monkeypatch):
    from crisislens.distill import data as D
    from crisislens.distill import probe_teacher

    calls: list[list[str]] = []

    def fake_embed(name: str, texts: list[str]) -> np.ndarray:
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed in the third chunk
        calls.append(list(texts))
        return np.array([[float(t.split()[1])] * 3 for t in texts], np.float32)

    monkeypatch.setattr(probe_teacher, "embed", fake_embed)
    rows = [D.Example(id=f"p{i}", text=f"post {i}", image=None, label=None, source="humaid") for i in range(10)]
    rows.append(rows[3])  # the same post twice is embedded once
    with pytest.raises(KeyboardInterrupt):
        probe_teacher.cached_rows_embeddings("minilm", rows, tmp_path, chunk=4)
    assert [len(c) for c in calls] == [4, 4]
    calls.clear()
    x = probe_teacher.cached_rows_embeddings("minilm", rows, tmp_path, chunk=4)
    assert calls == [["post 8", "post 9"]]  # only what the killed run had not cached
    assert x.shape == (11, 3) and x[:, 0].tolist() == [*range(10), 3]


def test_a_rows_photo_label_is_its_image_label_or_its_collections_own():
    from crisislens.distill import data as D
    from crisislens.distill.probe_teacher import photo_label

    tweet = D.Example("1", "roads cut", None, "rescue_volunteering_or_donation_effort", "crisismmd",
                      meta={"label_image": "vehicle_damage"})
    assert photo_label(tweet) == "infrastructure_and_utility_damage"  # the 8 CrisisMMD labels merged into 5
    assert photo_label(D.Example("2", "no photo label", None, "not_humanitarian", "crisismmd")) is None
    assert photo_label(D.Example("3", None, None, "affected_individuals", "images")) == "affected_individuals"
    assert photo_label(D.Example("4", None, None, None, "images")) is None


def test_a_local_patch_pool_gives_the_class_the_named_patches_own_features():
    model = tiny_student(photo_head=True, local_patch_pool=True).eval()
    seen = {}
    model.classifier.register_forward_hook(lambda _m, args, _out: seen.update(x=args[0]))
    inputs = batch()  # post 0: words + photo, 1: words, 2: photo only
    with torch.no_grad():
        out = model(inputs)
        own = model.norm(model.patch_proj(inputs.image_features) + model.row_embed(model._rows)
                         + model.col_embed(model._cols) + model.modality.weight[1])
        s = out.patch_scores
        expected = (s.unsqueeze(-1) * own).sum(1) / (s.sum(1, keepdim=True) + model.config.pool_eps)
    d = model.config.hidden
    assert torch.allclose(seen["x"][:, d:], expected, atol=1e-5)
    assert float(seen["x"][1, d:].abs().max()) == 0.0  # no photo, nothing pooled
    fused = tiny_student(photo_head=True).eval()
    fused.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert not torch.allclose(fused(inputs).logits[0], out.logits[0])  # the fused states, pooled


def test_the_deletion_loss_compares_the_top_patches_deleted_with_random_ones_deleted():
    from crisislens.distill.student_v2 import deletion_loss

    model = tiny_student(photo_head=True).eval()  # no dropout: the two passes compare exactly
    inputs = batch()  # post 0: words + photo, 1: words, 2: photo only

    def delete(idx, cells):  # a stand-in for PixelDeletion: zero the cells' features
        return inputs.image_features[idx].masked_fill(cells.unsqueeze(-1), 0.0)

    out = model(inputs)
    loss = deletion_loss(model, inputs, out, delete, ratio=0.0, margin=1.0, generator=torch.Generator().manual_seed(0))
    # by hand, with ratio 0: mean of margin - (p0 - p_top) over the two posts with a photo
    again = batch()
    again.image_features = inputs.image_features.masked_fill(out.patch_rationale.unsqueeze(-1), 0.0)
    with torch.no_grad():
        p, q = out.logits.softmax(-1), model(again).logits.softmax(-1)
    pred = p.argmax(1)
    expected = torch.stack([1.0 - (p[i, pred[i]] - q[i, pred[i]]) for i in (0, 2)]).mean()
    assert torch.allclose(loss.detach(), expected, atol=1e-5)
    loss.backward()
    assert float(model.patch_proj[1].weight.grad.abs().sum()) > 0  # it trains what reads the photo
    one = deletion_loss(model, inputs, model(inputs), delete, 3.0, 0.05, rows=1)
    assert one is not None and torch.isfinite(one)
    no_photo = batch()
    no_photo.image_present = torch.zeros(3, dtype=torch.bool)
    assert deletion_loss(model, no_photo, model(no_photo), delete, 3.0, 0.05) is None


def test_pixel_deletion_greys_out_the_cells_before_the_tower(tmp_path):
    from PIL import Image

    from crisislens.distill.student import StudentConfig
    from crisislens.distill.student_v2 import PixelDeletion
    from crisislens.runtime.preprocessing import load_image

    config = StudentConfig(image_size=64, image_blocks=2, image_channels=24)
    rng = np.random.default_rng(0)
    path = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 255, (80, 80, 3), dtype=np.uint8)).save(path)
    deleter = PixelDeletion(config)
    m = config.patch_grid**2
    none, some = torch.zeros(1, m, dtype=torch.bool), torch.zeros(1, m, dtype=torch.bool)
    some[0, :5] = True
    a, b = deleter([path, path], torch.cat([none, some]))
    pixels = torch.from_numpy(load_image(path, deleter.image_config)[0])[None]
    with torch.no_grad():
        assert torch.allclose(a, deleter.tower(pixels)[0], atol=1e-5)
    assert a.shape == (m, 24) and not torch.allclose(a, b)


def test_two_students_of_one_start_mix_weight_by_weight_and_refuse_other_shapes(tmp_path, capsys):
    from crisislens.distill.soup import mixed_state
    from crisislens.runtime.cli import main

    a, b = tiny_student(photo_head=True), tiny_student(photo_head=True)
    with torch.no_grad():
        for p in b.parameters():
            p.add_(1.0)
    save_student(a, tmp_path / "a.pt")
    save_student(b, tmp_path / "b.pt")
    assert main(["distill", "student-v2", "soup", str(tmp_path / "a.pt"), str(tmp_path / "b.pt"), "--weight", "0.25",
                 "--out", str(tmp_path / "mix")]) == 0
    mixed = load_student(tmp_path / "mix" / "best.pt")
    for (name, pa), pb, pm in zip(a.named_parameters(), b.parameters(), mixed.parameters()):
        assert torch.allclose(pm, 0.75 * pa + 0.25 * pb, atol=1e-6), name
    assert torch.equal(mixed_state(a.state_dict(), b.state_dict(), 0.0)["photo_head.weight"], a.photo_head.weight)

    save_student(tiny_student(), tmp_path / "other.pt")  # no photo head: another shape
    assert main(["distill", "student-v2", "soup", str(tmp_path / "a.pt"), str(tmp_path / "other.pt"), "--weight",
                 "0.5", "--out", str(tmp_path / "bad")]) != 0
    assert "only students of one shape mix" in capsys.readouterr().err
    assert main(["distill", "student-v2", "soup", str(tmp_path / "a.pt"), str(tmp_path / "b.pt"), "--weight", "1.5",
                 "--out", str(tmp_path / "bad")]) != 0
    assert "between 0 and 1" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_photos_read_alone_learn_their_own_patch_targets_when_asked(tmp_path):
    from crisislens.distill import data as D
    from crisislens.distill.student_v2 import LossWeights, TeacherV2, batch_loss

    root = tmp_path / "data"
    rows = [D.Example(id="a", text="words", image=str(root / "images/x/a.jpg"), label="not_humanitarian",
                      source="crisismmd"),
            D.Example(id="b", text="words", image=None, label="not_humanitarian", source="crisismmd"),
            D.Example(id="c", text=None, image=str(root / "images/x/c.jpg"), label="affected_individuals",
                      source="images")]
    inputs = batch()  # rows 0-2 as above: words and a photo, words alone, a photo alone
    features = SimpleNamespace(root=root, batch=lambda _: (inputs, torch.zeros(3, 7), torch.zeros(3)))
    target = np.zeros(9, np.float32)
    target[4] = 1.0
    teacher = TeacherV2({}, np.zeros((0, 5), np.float32), {}, {}, {"x/c.jpg": target})
    model = tiny_student(photo_head=True)
    _, off = batch_loss(model, rows, features, teacher, LossWeights(), None)
    assert off["patch_teacher"] == 0.0 and off["patch_rank"] == 0.0  # off unless asked
    weights = LossWeights(ce=0.0, photo_alone=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(30):
        loss, parts = batch_loss(model, rows, features, teacher, weights, None)
        assert parts["patch_teacher"] > 0
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert int(model.eval()(inputs).patch_scores[2].argmax()) == 4  # the photo alone now names cell 4
    with pytest.raises(ValueError, match="outputs-photo-patches"):
        batch_loss(model, rows, features, TeacherV2.empty(), weights, None)


def test_photo_alone_targets_are_refused_before_training_when_the_teacher_run_has_none(tmp_path, capsys):
    from crisislens.runtime.cli import main

    run = tmp_path / "teacher"
    run.mkdir()
    out = tmp_path / "student"
    assert main(["distill", "student-v2", "train", "--teacher-run", str(run), "--out", str(out),
                 "--set", "loss.photo_alone=true"]) != 0
    assert "has no outputs-photo-patches.npz" in capsys.readouterr().err
    assert not out.exists()  # refused before any work


def test_the_first_teachers_word_scores_fill_the_rows_the_teacher_run_has_none_for(tmp_path):
    """`token_outputs`: a teacher-outputs file's word scores (MiniLM pieces) become token targets
    for rows with words that the teacher run gives none; rows it covers and photos alone are kept."""
    from crisislens.distill import data as D
    from crisislens.distill.student_v2 import TeacherV2
    from crisislens.distill.teacher_outputs import TeacherOutputStore

    def out(scores):
        return {"probs": np.full(5, 0.2), "token_scores": np.array(scores, np.float32),
                "token_rationale": np.array(scores) >= 0.5, "has_image": False,
                "patch_scores": np.zeros(49), "patch_rationale": np.zeros(49, bool)}

    path = tmp_path / "outputs.npz"
    TeacherOutputStore.from_rows(["crisismmd:a", "crisismmd:b", "images:c"],
                                 [out([0.1, 0.9, 0.2]), out([0.5, 0.5]), out([0.3])], {"teacher": "t"}).save(path)
    rows = [D.Example("a", "roads cut", None, "not_humanitarian", "crisismmd"),
            D.Example("b", "bridge down", None, "not_humanitarian", "crisismmd"),
            D.Example("c", None, "x.jpg", "affected_individuals", "images"),
            D.Example("d", "not in the file", None, "not_humanitarian", "crisismmd")]
    own = np.array([1.0, 0.0], np.float32)
    teacher = TeacherV2({}, np.zeros((0, 5), np.float32), {"crisismmd:b": own}, {})
    assert teacher.add_token_outputs(path, rows) == 1
    np.testing.assert_allclose(teacher.tokens["crisismmd:a"], [0.1, 0.9, 0.2], atol=1e-3)
    assert teacher.tokens["crisismmd:b"] is own  # the teacher run's own scores win
    assert "images:c" not in teacher.tokens and "crisismmd:d" not in teacher.tokens


def test_a_missing_token_outputs_file_is_refused_before_training(tmp_path, capsys):
    from crisislens.runtime.cli import main

    out = tmp_path / "student"
    assert main(["distill", "student-v2", "train", "--no-teacher", "--out", str(out),
                 "--set", f"token_outputs={tmp_path / 'none.npz'}"]) != 0
    assert "none.npz: no such teacher-outputs file" in capsys.readouterr().err
    assert not out.exists()
