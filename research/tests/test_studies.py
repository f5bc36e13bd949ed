"""The studies' own logic (research/studies): the teacher recipe sweep end to end on a tiny random MiniLM
and a synthetic payload (no data, no GPU), and the zero-shot script's bundle option."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "studies"))

from tests.conftest import tiny_bundle, tiny_exported  # noqa: E402, F401  (the product suite's fixtures)

import teacher_sweep  # noqa: E402


def tiny_payload(folder: Path, per_source: int = 12) -> Path:
    """rows.npz + minilm.pt as `teacher_sweep prepare` writes them, from random tokens and a tiny BERT."""
    rng = np.random.default_rng(0)
    ids, rats, lengths, has_rat, labels, source, pool = [], [], [], [], [], [], []
    for code, _ in enumerate(teacher_sweep.SOURCES):
        for i in range(per_source):
            n = int(rng.integers(4, 9))
            row = np.concatenate([[101], rng.integers(1000, 1100, n - 2), [102]]).astype(np.uint16)
            ids.append(row)
            rats.append((rng.random(n) < 0.4).astype(np.uint8))
            lengths.append(n)
            has_rat.append(code == teacher_sweep.SOURCES.index("rationales"))
            labels.append(i % 5)
            source.append(code)
            pool.append(i % 2 == 0)
    folder.mkdir(parents=True)
    flat = np.concatenate(ids)
    np.savez_compressed(folder / "rows.npz", ids=flat, rationale=np.concatenate(rats),
                        lengths=np.array(lengths, np.int32), has_rationale=np.array(has_rat),
                        labels=np.array(labels, np.int8), source=np.array(source, np.int8), in_cpu_pool=np.array(pool))
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=1200, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=32)
    bert = transformers.BertModel(config)
    state = {k: v.detach().half() for k, v in bert.state_dict().items()}
    used = np.unique(flat).astype(np.int64)
    key = "embeddings.word_embeddings.weight"
    state[key] = state[key][torch.from_numpy(used)].clone()
    torch.save({"state": state, "used_ids": torch.from_numpy(used), "vocab": 1200, "config": config.to_dict()},
               folder / "minilm.pt")
    return folder


def test_sweep_runs_a_recipe_end_to_end_and_renders(tmp_path: Path):
    payload = tiny_payload(tmp_path / "payload")
    bert = teacher_sweep.load_bert(payload)
    assert bert.embeddings.word_embeddings.weight.shape == (1200, 16)
    out = tmp_path / "out"
    result = teacher_sweep.run(payload, out, budget_s=120, only=["zs-humaid-2000"], device_name="cpu")
    saved = json.loads((out / "results_0.json").read_text())
    assert saved["rows"] == {s: 12 for s in teacher_sweep.SOURCES}
    (recipe,) = saved["recipes"]
    assert recipe["recipe"]["name"] == "zs-humaid-2000" and recipe["humaid_pool_rows"] == 6
    assert recipe["epochs"] and recipe["best"] == teacher_sweep.best_epoch(recipe) == teacher_sweep.best_epoch(
        result["recipes"][0])
    for epoch in recipe["epochs"]:
        for split in ("dev", "test", "crisislex"):
            assert 0.0 <= epoch[split]["macro_f1"] <= 1.0 and 0.0 <= epoch[split]["accuracy"] <= 1.0

    # a later, longer run of the same recipe replaces the earlier one; names not run are listed
    shorter = {**saved, "recipes": [{**recipe, "epochs": recipe["epochs"][:1]}]}
    (tmp_path / "early.json").write_text(json.dumps(shorter))
    merged = teacher_sweep.merge([("first", [shorter]), ("second", [saved])])
    assert [r["run"] for r in merged["recipes"]] == [2] and len(merged["runs"]) == 2
    assert "cpu-recipe" in merged["not_run"] and "zs-humaid-2000" not in merged["not_run"]
    teacher_sweep.render([["first", str(tmp_path / "early.json")], ["second", str(out / "results_0.json")]],
                         tmp_path / "reports")
    md = (tmp_path / "reports" / "teacher_sweep.md").read_text()
    assert "| zs-humaid-2000 | 2 | 1 of 2 |" in md and "run 2: `second`" in md


def test_sweep_recipes_have_unique_names():
    names = [r.name for r in teacher_sweep.RECIPES]
    assert len(names) == len(set(names))


def test_zero_shot_bundle_option_is_checked(tmp_path: Path):
    pytest.importorskip("onnxruntime")
    import zero_shot_bundles

    parser = argparse.ArgumentParser()
    ok = zero_shot_bundles.parse_bundles(parser, [f"a={tmp_path}", f"b={tmp_path}:int8-w8a32"])
    assert ok == {"a": (tmp_path, None), "b": (tmp_path, "int8-w8a32")}
    for bad in ([str(tmp_path)], [f"={tmp_path}"], [f"a={tmp_path}", f"a={tmp_path}"], [f"a={tmp_path / 'missing'}"]):
        with pytest.raises(SystemExit):
            zero_shot_bundles.parse_bundles(parser, bad)


def test_image_tower_cuts_give_the_stage_widths():
    pytest.importorskip("efficientnet_lite_pytorch")
    import image_tower_latency

    result = image_tower_latency.measure([64], rounds=1, reps=1, warmup=1)
    widths = {r["cut"]: r["output"][0] for r in result["rows"]}
    assert list(widths.values()) == [1280, 320, 192, 112]
    assert all(r["median_ms"] > 0 and r["runs"] == 1 for r in result["rows"])
    md = image_tower_latency.to_markdown({**result, "seconds": 0.1},
                                         {"command": "c", "git_commit": "0" * 40, "created": "now"})
    assert "| 64 | to stage 5 (112 ch) |" in md


def test_patch_iou_counts_only_posts_with_a_photo_and_words_for_both():
    import _students

    class Store:
        rows = {"crisismmd:a": {"has_image": True, "patch_rationale": np.array([1, 1, 0, 0], np.uint8)},
                "crisismmd:b": {"has_image": False, "patch_rationale": np.zeros(4, np.uint8)},
                "crisismmd:c": {"has_image": True, "patch_rationale": np.array([1, 0, 1, 0], np.uint8)}}

        def row(self, key: str) -> dict:
            return self.rows[key]

    from crisislens.distill.data import Example

    rows = [Example(id=i, text="t", image=None, label=None, source="crisismmd") for i in "abc"]
    student = [np.array([0, 1, 1, 0]), np.array([1, 0, 0, 0]), np.array([1, 0, 1, 0])]
    outs = [{"has_image": True, "content": np.array([True]), "patch_rationale": p} for p in student]
    outs[2]["content"] = np.array([False])  # no words: nothing was transferred
    assert _students.patch_ious(rows, outs, Store()) == [pytest.approx(1 / 3)]


def test_patch_fit_renders_the_tuning_table():
    import patch_fit

    cell = {"iou": 0.3, "se": 0.01, "n": 80}
    fit = {"train-crisismmd": cell, "train-pairs": cell, "dev": cell, "test": {"iou": None, "se": 0.0, "n": 0}}
    result = {"students": {"s": {"fit": fit}}, "seconds": 1.0,
              "tuned": {"student": "s", "epochs": 1, "lr": 0.001, "rows": 10, "parameters": 5,
                        "history": [{"epoch": 1, **fit}]}}
    md = patch_fit.to_markdown(result, {"command": "c", "git_commit": "0" * 40, "created": "now"})
    assert "| s | 0.3000 ± 0.010 (n 80) | 0.3000 ± 0.010 (n 80) | 0.3000 ± 0.010 (n 80) | – |" in md
    assert "| 1 | 0.3000" in md and "1 more epoch(s)" in md
    assert patch_fit.summary([0.2, 0.4]) == {"iou": 0.3, "se": 0.1, "n": 2}
    assert patch_fit.summary([]) == {"iou": None, "se": 0.0, "n": 0}


def test_trained_pairs_reads_the_training_summary(tmp_path: Path):
    import _students

    ckpt = tmp_path / "best.pt"
    assert _students.trained_pairs(str(ckpt)) is None
    (tmp_path / "train_summary.json").write_text(json.dumps({"data": {"pairs": 5562}}))
    assert _students.trained_pairs(str(ckpt)) == 5562
    (tmp_path / "train_summary.json").write_text(json.dumps({"data": {}}))
    assert _students.trained_pairs(str(ckpt)) == 0


def test_student_benchmarks_share_one_command_line(tmp_path: Path):
    import _students

    ckpt = tmp_path / "best.pt"
    ckpt.write_bytes(b"")
    parser = _students.student_parser("Title line.\nmore")
    args = parser.parse_args(["--student", f"a={ckpt}", "--student", f"b={ckpt}"])
    assert args.out == Path("research/results") and args.data_root is None
    assert _students.student_checkpoints(parser, args.student) == {"a": str(ckpt), "b": str(ckpt)}
    with pytest.raises(SystemExit):
        _students.student_checkpoints(parser, [f"c={tmp_path / 'missing.pt'}"])


def test_other_teachers_compare_their_own_top_k_on_posts_with_a_photo_and_words():
    import patch_transfer_ceiling

    from tests.test_teacher import batch, tiny_teacher

    inputs = batch(image_present=(True, False, True, True), text=(True, True, False, True))

    class Features:
        def batch(self, rows):
            return inputs, None, None

    teacher = tiny_teacher().eval()
    torch.manual_seed(1)
    other = tiny_teacher().eval()
    with torch.no_grad():  # a different teacher: its own extractor and transfer
        for p in other.parameters():
            p.add_(0.5 * torch.randn_like(p))
    scores = patch_transfer_ceiling.other_teachers(teacher, {"same": teacher, "other": other}, Features(),
                                                   ["r0", "r1", "r2", "r3"], k=2)
    assert scores["same"] == [1.0, 1.0]  # posts 0 and 3: a photo and words
    assert len(scores["other"]) == 2 and all(0.0 <= v <= 1.0 for v in scores["other"])


def test_patch_agreement_names_each_checkpoints_state_terms_and_epochs(tmp_path: Path):
    import patch_agreement

    ckpt = tmp_path / "best.pt"
    torch.save({"loss": {"align": 1.0, "hidden": 0.5, "relation": 0.0}}, ckpt)
    assert patch_agreement.state_terms(str(ckpt)) == "hidden 0.5"
    torch.save({"loss": {"align": 1.0}}, ckpt)  # trained before the state terms existed
    assert patch_agreement.state_terms(str(ckpt)) == "–"
    assert patch_agreement.epochs_run(str(ckpt)) == "–"
    history = [{"epoch": e, "dev": {"macro_f1": f}} for e, f in ((1, 0.66), (2, 0.62), (3, 0.65))]
    (tmp_path / "train_summary.json").write_text(json.dumps({"history": history}))
    assert patch_agreement.epochs_run(str(ckpt)) == "1 of 3"


def test_bundle_token_rule_matches_the_students_and_fills_up_to_the_minimum():
    import bundle_rationale_agreement as bra
    from crisislens.distill.teacher import select_tokens

    config = argparse.Namespace(rationale_threshold=0.5, min_rationale_tokens=2)
    rng = np.random.default_rng(3)
    for _ in range(50):
        n = int(rng.integers(3, 12))
        scores = rng.random(n)
        content = np.r_[False, rng.random(n - 2) < 0.8, False]
        ours = bra.hard_tokens(scores, content, 0.5, 2)
        theirs = select_tokens(torch.tensor(scores)[None], torch.tensor(content)[None], config)[0].numpy()
        assert (ours == theirs).all()
    # nothing passes the threshold: the two best content tokens, never a special token
    keep = bra.hard_tokens(np.array([0.9, 0.1, 0.3, 0.2, 0.95]), np.array([False, True, True, True, False]), 0.5, 2)
    assert keep.tolist() == [False, False, True, True, False]


def test_chance_iou_is_the_mean_over_all_pairs_of_k_sets():
    from itertools import combinations

    import bundle_rationale_agreement as bra

    m, k = 6, 2
    sets = [set(c) for c in combinations(range(m), k)]
    exact = np.mean([len(a & b) / len(a | b) for a in sets for b in sets])
    assert bra.chance_iou(k, m) == pytest.approx(exact)
    assert bra.chance_iou(49, 49) == pytest.approx(1.0)
    assert bra.chance_iou(1, 49) == pytest.approx(1 / 49)
    with pytest.raises(ValueError, match="0 < k <= m"):
        bra.chance_iou(0, 49)


def test_bundle_agreement_with_its_own_outputs_as_teacher_is_perfect(tiny_bundle: Path, tmp_path: Path):
    """The tiny bundle scored against a teacher store made of its own outputs: every agreement is 1,
    posts without a photo stay out of the patch IoU, and a teacher of other lengths is refused."""
    from PIL import Image

    import bundle_rationale_agreement as bra
    from crisislens.distill.teacher_outputs import TeacherOutputStore
    from crisislens.runtime.bundle import load_bundle
    from crisislens.runtime.engine import Engine
    from crisislens.runtime.schema import Post

    rng = np.random.default_rng(0)
    posts = []
    for i in range(6):
        photo = None
        if i % 2 == 0:
            photo = tmp_path / f"p{i}.png"
            Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(photo)
        posts.append(Post(id=f"t{i}", text=f"flood water rising near bridge {i} people need boats", image=photo,
                          label="rescue_volunteering_or_donation_effort"))
    engine = Engine(load_bundle(tiny_bundle))
    own = bra.variant_outputs(engine, bra.run_batches(engine, posts, batch_size=4))
    assert [o["has_image"] for o in own] == [True, False] * 3
    assert all(o["patch_rationale"].sum() == (2 if o["has_image"] else 0) for o in own)  # manifest top_k_patches 2
    keys = [f"crisismmd:{p.id}" for p in posts]
    store = TeacherOutputStore.from_rows(keys, own, {"teacher_checkpoint_sha256": "x"})
    result = bra.evaluate_variant(tiny_bundle, None, posts, store, ks=[1, 2])
    a = result["agreement_with_teacher"]
    assert a["label_agreement"] == 1.0 and a["n_with_image"] == 3
    assert a["token_rationale_vs_teacher"]["micro_f1"] == pytest.approx(1.0)
    assert a["patch_topk_iou_vs_teacher"] == pytest.approx(1.0)
    assert result["patch_iou_at_k"]["1"]["n"] == 3 and result["teacher_stored_top_k"]["n"] == 3
    md = bra.to_markdown({"n": 6, "ks": [1, 2], "pytorch_reference": None, "variants": {"tiny": result},
                          "seconds": 0.1}, {"command": "x", "git_commit": "abc1234", "created": "now"})
    assert "| tiny (" in md and "k = 2" in md and "chance" in md and "depend on its batch" in md
    bc = result["batch_consistency"]
    assert bc["n"] == 6 and bc["runtime"]["labels_differing"] == 0 and bc["runtime"]["max_token_diff"] < 1e-5

    short = [dict(o, token_scores=o["token_scores"][:-1], token_rationale=o["token_rationale"][:-1]) for o in own]
    with pytest.raises(ValueError, match="crisismmd:t0: the teacher's outputs cover"):
        bra.teacher_rows(TeacherOutputStore.from_rows(keys, short, {}), keys, own)


def test_teacher_rerun_compares_a_run_with_the_stored_teacher_and_renders(tmp_path: Path):
    import teacher_rerun_agreement as tra
    from crisislens.distill import data as D
    from crisislens.distill.teacher_outputs import TeacherOutputStore
    from crisislens.runtime.labels import LABEL_NAMES

    rng = np.random.default_rng(1)
    rows, outs = [], []
    for i in range(8):
        n = int(rng.integers(4, 9))
        content = np.r_[False, np.ones(n - 2, bool), False]
        has_image = i % 2 == 0
        patch = rng.random(49)
        outs.append({"probs": np.eye(5)[i % 5] * 0.8 + 0.04, "content": content, "token_scores": rng.random(n),
                     "token_rationale": content & (rng.random(n) < 0.5), "has_image": has_image,
                     "patch_scores": patch, "patch_rationale": np.argsort(-patch).argsort() < 5})
        rows.append(D.Example(id=str(i), text="x", image=None, label=LABEL_NAMES[i % 5], source="crisismmd"))
    store = TeacherOutputStore.from_rows([f"crisismmd:{i}" for i in range(8)], outs, {"teacher_checkpoint_sha256": "abc"})
    same = tra.compare(outs, rows, store, [1, 5])
    a = same["agreement_with_teacher"]
    assert same["macro_f1"] == pytest.approx(1.0) and a["label_agreement"] == 1.0 and a["n_with_image"] == 4
    assert a["token_rationale_vs_teacher"]["micro_f1"] == pytest.approx(1.0) and a["patch_topk_iou_vs_teacher"] == 1.0
    other = [dict(o, probs=np.roll(o["probs"], 1), patch_scores=-o["patch_scores"],
                  patch_rationale=np.argsort(o["patch_scores"]).argsort() < 5) for o in outs]
    moved = tra.compare(other, rows, store, [1, 5])["agreement_with_teacher"]
    assert moved["label_agreement"] == 0.0 and moved["patch_topk_iou_vs_teacher"] == 0.0

    result = {"ks": [1, 5], "outputs": "o.npz", "reference_sha256": "abc", "seconds": 1.0,
              "teachers": {"rerun": {"folder": "artifacts/t", "sha256": "f" * 64, "dev_macro_f1": 0.6}},
              "splits": {"test": {"rerun": same}, "dev": {"rerun": same}},
              "bundles": {"int8-text": tra.compare(other, rows, store, [1, 5])},
              "batch_dependence": {"rerun": {"n": 8, "labels_differing": 1, "max_token_diff": 0.1, "patch_iou": 0.9,
                                             "n_with_image": 4}}}
    md = tra.to_markdown(result, {"command": "x", "git_commit": "abc1234", "created": "now"})
    assert "| rerun | 8 | 1 | 0.100 | 0.9000 (4) |" in md
    assert "## CrisisMMD test" in md and "## CrisisMMD dev" in md and "student bundle int8-text" in md
    assert md.count("student bundle int8-text") == 2  # test only: its two tables

    parser = argparse.ArgumentParser()
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "best.pt").write_bytes(b"")
    assert tra.parse_teachers(parser, [f"a={tmp_path / 't'}"]) == {"a": tmp_path / "t"}
    for bad in ([f"{tmp_path}"], [f"a={tmp_path}"], [f"a={tmp_path / 't'}", f"a={tmp_path / 't'}"]):
        with pytest.raises(SystemExit):
            tra.parse_teachers(parser, bad)


def test_teacher_batch_dependence_compares_batched_and_single_runs():
    import teacher_rerun_agreement as tra
    from crisislens.distill.teacher import TeacherInputs
    from tests.test_teacher import tiny_teacher

    model = tiny_teacher().eval()
    torch.manual_seed(1)
    feats = {i: torch.randn(9, 16) for i in range(6)}
    lengths = {i: 3 + i for i in range(6)}

    def batches(rows):
        width = max(lengths[r] for r in rows) + 2
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for j, r in enumerate(rows):
            row = [101, *range(11, 11 + lengths[r]), 102]
            ids[j, : len(row)], mask[j, : len(row)] = torch.tensor(row), 1
        return TeacherInputs(input_ids=ids, attention_mask=mask, image_present=torch.tensor([r % 2 == 0 for r in rows]),
                             image_features=torch.stack([feats[r] for r in rows]))

    r = tra.batch_dependence(model, batches, list(range(6)))
    assert r["n"] == 6 and r["n_with_image"] == 3 and 0 <= r["labels_differing"] <= 6
    assert 0.0 <= r["patch_iou"] <= 1.0 and r["max_token_diff"] >= 0.0
    alone = tra.batch_dependence(model, batches, [0])  # a batch of one is its own single run
    assert alone["max_token_diff"] == 0.0 and alone["patch_iou"] == 1.0 and alone["labels_differing"] == 0


def test_teacher_resolution_compares_the_teacher_with_itself_on_a_resized_photo(tmp_path: Path):
    import teacher_resolution as tr
    from PIL import Image

    from tests.test_teacher import batch, tiny_teacher

    rng = np.random.default_rng(5)
    rows = []
    for i in range(4):
        path = tmp_path / f"p{i}.png"
        Image.fromarray(rng.integers(0, 256, (180, 260, 3), dtype=np.uint8)).save(path)
        rows.append(argparse.Namespace(image=path))
    torch.manual_seed(2)
    lift = torch.randn(3, 16)

    seen = []

    def tower(pixels):  # a 3 x 3 grid of mean colours, lifted to the tiny teacher's 16 channels
        seen.append(pixels)
        grid = torch.nn.functional.adaptive_avg_pool2d(pixels, 3)
        return grid.flatten(2).transpose(1, 2) @ lift

    inputs = batch(image_present=(True, False, True, True), text=(True, True, False, True))
    full = np.stack([tr.load_image(r.image, tr.ImageConfig(size=224))[0] for r in rows])
    inputs.image_features = tower(torch.from_numpy(full))  # what the cache holds: the 224 px photo

    class Features:
        def batch(self, chunk):
            return inputs, None, None

    seen.clear()
    student = [np.zeros(9, bool) for _ in rows]
    for p in student:
        p[:2] = True  # a student that always picks the first two patches
    teacher = tiny_teacher().eval()
    found = tr.compare(teacher, tower, Features(), rows, sizes=(112, 224), student_patches=student)
    assert [tuple(p.shape) for p in seen] == [(4, 3, 224, 224)] * 2  # always the teacher's input size
    assert torch.equal(seen[1], torch.from_numpy(full))  # 224: the photo as cached
    assert not torch.allclose(seen[0], seen[1], atol=1e-2)  # 112: detail lost, then resized back
    same = found[224]  # decoded again at the teacher's size: the cached answer exactly
    assert same["patch_iou"] == [1.0, 1.0] and same["label_agreement"] == [1.0, 1.0]
    assert same["token_f1"] == [1.0, 1.0]  # only posts 0 and 3 have a photo and words
    with torch.no_grad():
        cached = teacher(inputs).patch_rationale.numpy()
    from crisislens.evaluation.metrics import set_iou

    assert same["student_patch_iou"] == [set_iou(student[i], cached[i]) for i in (0, 3)]
    small = found[112]
    assert len(small["patch_iou"]) == 2 and all(0.0 <= v <= 1.0 for v in small["patch_iou"])


def test_quantization_choices_scores_a_form_against_fp32_and_reads_the_photo_size(tiny_exported):
    import quantization_choices as qc

    _, path = tiny_exported
    from tests.tiny_bundle import SIZE

    assert qc.photo_size(path) == SIZE
    reference = np.array([[2.0, 0, 0, 0, 0], [0, 2.0, 0, 0, 0], [0, 0, 2.0, 0, 0], [0, 0, 0, 2.0, 0]])
    moved = reference.copy()
    moved[3] = [0, 0, 0, 1.0, 1.5]  # one label changes, by 1.5 at most
    gold = ["affected_individuals", "infrastructure_and_utility_damage", "rescue_volunteering_or_donation_effort",
            "other_relevant_information"]
    same = qc.agreement(reference, reference, gold)
    assert same["label_agreement"] == 1.0 and same["max_abs_logit_diff"] == 0.0 and same["accuracy"] == 1.0
    m = qc.agreement(moved, reference, gold)
    assert m["label_agreement"] == 0.75 and m["max_abs_logit_diff"] == 1.5 and m["accuracy"] == 0.75
    assert m["mean_abs_logit_diff"] == pytest.approx(2.5 / 20)


def test_calibration_measures_each_split_as_shipped_and_with_the_dev_temperature(tiny_bundle: Path, tmp_path: Path):
    import calibration as C

    from crisislens.runtime.labels import LABEL_NAMES

    rng = np.random.default_rng(3)
    words = ["flood", "bridge", "donate", "injured", "road", "water", "shelter", "power", "help", "storm"]
    data = {}
    for split in C.SPLITS:
        path = tmp_path / f"{split}.jsonl"
        path.write_text("".join(json.dumps({"id": f"{split}{i}", "text": " ".join(rng.choice(words, 6)),
                                            "label": LABEL_NAMES[i % 5]}) + "\n" for i in range(25)))
        data[split] = ([path], None)
    result = C.measure(tiny_bundle, None, data)
    assert result["temperature"] == result["temperature_fit_on_dev"] > 0  # the tiny bundle carries none
    assert result["temperature_from"] == "fitted on CrisisMMD dev here"
    for split in C.SPLITS:
        shipped, scaled = result[split]["no_temperature"], result[split]["with_temperature"]
        assert shipped["n"] == scaled["n"] == 25
        assert shipped["accuracy"] == scaled["accuracy"]  # a temperature never changes the top class
        assert [a["threshold"] for a in shipped["at_confidence"]] == list(C.STEPS)
        assert sum(b["n"] for b in shipped["bins"]) == 25
    dev = result["crisismmd_dev"]
    assert dev["with_temperature"]["nll"] <= dev["no_temperature"]["nll"] + 1e-9  # fitted on dev: never worse there
    import shutil

    from crisislens.runtime.bundle import set_temperature

    own = shutil.copytree(tiny_bundle, tmp_path / "calibrated")
    set_temperature(own, "fp32", 1.3, {"fitted_on": "somewhere"})
    carried = C.measure(own, "fp32", data)
    assert (carried["temperature"], carried["temperature_from"]) == (1.3, "the bundle")
    assert carried["crisismmd_test"]["no_temperature"] == C.measure(tiny_bundle, "fp32", data)["crisismmd_test"]["no_temperature"]
    text = C.to_markdown({"n_bins": C.N_BINS, "steps": list(C.STEPS), "crisislex_n": 25, "seconds": 1.0,
                          "bundles": {"tiny": result}},
                         {"command": "python research/studies/calibration.py", "git_commit": "0" * 40, "created": "now"})
    assert text.count("| tiny | ") == 2 * len(C.SPLITS) and "Reliability of tiny with T = " in text


def test_student_v2_runs_reads_each_runs_summary_and_names_its_settings(tmp_path: Path):
    import student_v2_runs

    run = tmp_path / "run"
    run.mkdir()
    score = {"n": 10, "macro_f1": 0.5, "accuracy": 0.7, "per_class_f1": {"affected_individuals": 0.25}}
    (run / "train_summary.json").write_text(json.dumps({
        "config": {"seed": 7, "epochs": 5, "humaid_per_epoch": 8000, "teacher_run": "", "loss": {"token_human": 0.5},
                   "model": {"frozen_text_layers": 6, "source_offsets": 0, "image_size": 224}},
        "history": [{"dev": {"macro_f1": 0.4}}, {"dev": {"macro_f1": 0.5}}], "best_dev_macro_f1": 0.5,
        "train_minutes": 3.0, "eval": {"crisismmd:dev": score, "images:kerala photo only": score}}))
    r = student_v2_runs.measure(run)
    assert r["recipe"] == "seed=7, epochs=5, no teacher, model.frozen_text_layers=6"
    assert student_v2_runs.recipe({"humaid_per_epoch": 4000, "humaid_gold": False, "teacher_run": "a/probe-teacher",
                                   "loss": {"kd": 1.0}}) == (
        "humaid_per_epoch=4000, humaid_gold=False, teacher probe-teacher, loss.kd=1.0")
    text = student_v2_runs.render({"runs": {"a": r}, "seconds": 0.1},
                                  {"command": "c", "git_commit": "abcdef0", "created": "now"})
    assert "| a | seed=7, epochs=5, no teacher, model.frozen_text_layers=6 | 0.400 / 0.500 | 3.0 |" in text
    assert "| a | kerala photos alone | 10 | 0.5000 | 0.7000 | 0.250 |" in text
    with pytest.raises(SystemExit):
        student_v2_runs.main(["--run", f"b={tmp_path / 'missing'}", "--out", str(tmp_path)])
    assert student_v2_runs.recipe({"teacher_run": "t", "model": {"local_patch_pool": True, "source_offsets": 0}}) == (
        "teacher t, model.local_patch_pool=True")
    # --keep: an earlier run's numbers stay (its folder gone), with the commit that measured them
    student_v2_runs.main(["--run", f"a={run}", "--out", str(tmp_path)])
    import shutil

    shutil.rmtree(run)
    run.mkdir()
    (run / "train_summary.json").write_text(json.dumps({
        "config": {"seed": 13, "teacher_run": "t", "model": {"local_patch_pool": True}},
        "history": [{"dev": {"macro_f1": 0.6}}], "best_dev_macro_f1": 0.6, "train_minutes": 1.0,
        "eval": {"crisismmd:dev": score}}))
    student_v2_runs.main(["--keep", "a", "--run", f"local={run}", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "student_v2_runs.json").read_text())
    assert list(saved["runs"]) == ["a", "local"] and saved["runs"]["a"]["best_dev_macro_f1"] == 0.5
    assert "Kept from an earlier run of this study" in (tmp_path / "student_v2_runs.md").read_text()
    with pytest.raises(SystemExit):
        student_v2_runs.main(["--keep", "nope", "--run", f"local={run}", "--out", str(tmp_path)])


def test_photo_towers_probe_scores_the_unseen_event_once_with_the_dev_choice(tmp_path: Path):
    import photo_towers_unseen_event as study

    rng = np.random.default_rng(0)
    names = ["infrastructure_and_utility_damage", "not_humanitarian"]
    keys, grids, rows = [], [], {"train": [], "dev": [], "unseen": []}
    for split, n in (("train", 40), ("dev", 20), ("unseen", 20)):
        for i in range(n):
            label = names[i % 2]
            keys.append(f"{split}{i}.jpg")
            grids.append(rng.normal(3.0 if label == names[0] else -3.0, 1.0, (4, 8)))
            rows[split].append((keys[-1], label, "e", "images" if i % 4 < 2 else "crisismmd"))
    np.savez(tmp_path / "photos-lite0.npz", keys=np.array(keys), grid=np.array(grids, np.float16))
    out = study.probe("lite0", tmp_path, rows["train"], rows["dev"], rows["unseen"])
    assert set(out) == {"all training photos", "all training photos, balanced class weights", "MEDIC photos only"}
    for r in out.values():  # separable: right on every unseen photo
        assert r["kerala_accuracy"] == 1.0 and r["kerala_macro_f1"] == 1.0 and r["kerala_errors"] == {}
    assert out["MEDIC photos only"]["train_photos"] == 20


def test_probe_teacher_humaid_reads_each_weights_summary_and_renders():
    import probe_teacher_humaid

    def report(f1: float) -> dict:
        per = {name: {"precision": f1, "recall": f1, "f1": f1, "support": 3}
               for name in ("affected_individuals", "other_relevant_information")}
        return {"n": 6, "macro_f1": f1, "accuracy": f1 + 0.1, "per_class": per}

    summary = {"C": 2.0, "crisismmd:dev": report(0.7), "crisismmd:test": report(0.72),
               "crisislex_t26 sample of 6 (zero-shot)": report(0.4)}
    r = probe_teacher_humaid.row(0.3, summary)
    assert r["crisislex"]["n"] == 6 and r["test_affected_f1"] == 0.72
    assert probe_teacher_humaid.row(0.0, {k: v for k, v in summary.items() if "crisislex" not in k})["crisislex"] is None
    text = probe_teacher_humaid.render({"encoder": "mpnet", "humaid_rows": 10, "rows": [r], "seconds": 0.1},
                                       {"command": "c", "git_commit": "abcdef0", "created": "now"})
    assert "| 0.3 | 2 | 0.7000 | 0.7200 | 0.8200 | 0.720 | 0.4000 / 0.5000 | 0.400 | 0.400 |" in text
    with pytest.raises(SystemExit):
        probe_teacher_humaid.main(["--weights", "a,b"])
    groups = {"humaid:train": list(range(10)), "rationales:train": [1], "crisismmd:train": [2]}
    small = probe_teacher_humaid.subsample(groups, 4, 13)
    assert len(small["humaid:train"]) == 4 and set(small["humaid:train"]) <= set(range(10))
    assert "rationales:train" not in small and small["crisismmd:train"] == [2]
    assert probe_teacher_humaid.subsample(groups, 4, 13) == small  # seeded
    assert probe_teacher_humaid.subsample(groups, 0, 13)["humaid:train"] == groups["humaid:train"]


def test_student_v2_shows_the_deletion_drops_where_there_is_no_ratio(tmp_path: Path):
    import student_v2

    assert student_v2.deletion_cell({"ratio": 3.456, "mean_drop_top_k": 0.3, "mean_drop_random_k": 0.1}) == "3.46"
    assert student_v2.deletion_cell({"ratio": None, "mean_drop_top_k": -0.0015, "mean_drop_random_k": -0.0055}) == (
        "n/a (drops -0.0015 / -0.0055)")
    with pytest.raises(SystemExit):
        student_v2.main(["--out", str(tmp_path)])  # neither a bundle nor --render-only


def test_patch_token_deletion_measures_both_deletions_and_where_greying_lands(tmp_path: Path):
    from types import SimpleNamespace

    import patch_token_deletion as ptd

    from crisislens.distill import data as D
    from crisislens.distill.student import save_student
    from tests.test_student import tiny_student
    from tests.test_teacher import batch

    class Local:  # a tower whose greyed cells change only themselves
        grid = 3

        def __call__(self, images, cells):
            return torch.ones(len(images), 9, 16).masked_fill(cells.unsqueeze(-1), 0.0)

    s = ptd.spread(Local(), [tmp_path / "a.jpg"] * 3, np.random.default_rng(0), k=2)
    assert s["photos"] == 3 and s["share_on_greyed_cells"] == pytest.approx(1.0) and s["even_share"] == pytest.approx(2 / 9)

    run = tmp_path / "run"
    run.mkdir()
    save_student(tiny_student(photo_head=True), run / "best.pt")
    inputs = batch()  # post 0: words + photo, 1: words, 2: photo only
    posts = [D.Example(id=str(i), text="x", image=tmp_path / f"{i}.jpg", label=None, source="crisismmd") for i in (0, 2)]
    features = SimpleNamespace(
        root=tmp_path, images=SimpleNamespace(index={"0.jpg": 0, "2.jpg": 1}),
        batch=lambda rows: (type(inputs)(**{k: None if v is None else v[[int(e.id) for e in rows]]
                                            for k, v in inputs.__dict__.items()}), None, None))

    def grey(images, cells):
        return inputs.image_features[[int(Path(i).stem) for i in images]].masked_fill(cells.unsqueeze(-1), 0.0)

    out = ptd.drops(run, {"both": posts}, features, grey, draws=3, seed=0)["both"]
    assert out["posts"] == 2
    for how in ("pixels", "tokens"):
        d = out[how]
        assert np.isfinite(d["mean_drop_top_k"]) and np.isfinite(d["mean_drop_random_k"])
        assert d["ratio"] is None or d["ratio"] == pytest.approx(d["mean_drop_top_k"] / d["mean_drop_random_k"])
    same = ptd.agreement(run, run, {"both": posts}, features)["both"]
    assert same["posts"] == 2 and same["same_posts"] == 1.0  # a run agrees with itself
    text = ptd.render({"spread": s, "draws": 3, "runs": {"run": {"both": out}}, "seconds": 1.0,
                       "agreement": {"run vs run": {"both": same}}},
                      {"command": "c", "git_commit": "abcdef0", "created": "now"})
    assert "100.0% of the change" in text and "| run | both (2) |" in text
    assert "| run vs run | both (2) | 1.000 |" in text


def test_student_soup_marks_the_weight_chosen_on_dev_and_needs_two_students(tmp_path: Path):
    import student_soup

    def s(f1: float, n: int = 10) -> dict:
        return {"n": n, "macro_f1": f1, "accuracy": f1 + 0.1, "affected_individuals_f1": None}

    rows = [{"weight": w, "crisismmd:dev": s(dev), "humaid:heldout": s(hum), "choice": (dev + hum) / 2,
             "crisismmd:test": s(0.7), "test with a photo: text + photo": s(0.8, 3),
             "test with a photo: text only": s(0.75, 3), "kerala photos alone": s(0.3, 4),
             "crisislex_t26 sample": s(0.5)} for w, dev, hum in ((0.0, 0.76, 0.6), (0.5, 0.74, 0.7))]
    result = {"first": "a.pt", "second": "b.pt", "sample": 10, "seed": 13, "weights": rows, "chosen": 0.5,
              "seconds": 1.0}
    text = student_soup.render(result, {"command": "c", "git_commit": "abcdef0", "created": "now"})
    assert "| 0.5 (chosen) | 0.7400 / 0.8400 | 0.7000 / 0.8000 | 0.7200 | 0.7000 / 0.8000 | – | +0.0500 |" in text
    assert "| 0 | 0.7600 / 0.8600 |" in text
    assert [student_soup.choice_score(r) for r in rows] == pytest.approx([0.68, 0.72])
    assert student_soup.chosen_weight(rows) == 0.5
    assert student_soup.chosen_weight([{**rows[1], "weight": 0.8}, rows[1]]) == 0.5  # a tie: the smaller weight
    with pytest.raises(SystemExit):
        student_soup.main(["--out", str(tmp_path)])  # no students given
