"""Export on a tiny random student: ONNX (dynamic batch/sequence) parity with PyTorch on mixed,
text-only, image-only and batch-1 inputs; Optimum INT8 (dynamic and QDQ) and FP16 variants; a
bundle; and the torch-free runtime engine + `evaluate_bundle` over real fixture posts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("onnxscript")
pytest.importorskip("optimum.onnxruntime")

from crisislens.export.onnx_export import compare, ort_session, run_ort, run_torch  # noqa: E402
from crisislens.export.quantize import convert_fp16, quantize_dynamic, quantize_static_qdq  # noqa: E402
from crisislens.runtime.bundle import load_bundle  # noqa: E402
from crisislens.runtime.labels import LABEL_NAMES  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "posts"
SIZE, GRID, MAX_LEN = 6, 3, 16


@pytest.fixture
def exported(tiny_exported):
    return tiny_exported


def feeds(rng, b, n, present, text=True):
    ids = rng.integers(1000, 30000, (b, n)) if text else np.zeros((b, 2), np.int64)
    if not text:
        n = 2
    ids[:, 0], ids[:, -1] = 101, 102
    mask = np.ones((b, n), np.int64)
    if b > 1 and n > 4:
        mask[0, n - 2 :] = 0  # padding
        ids[0, n - 2 :] = 0
    from crisislens.runtime.backends.feeds import image_inputs

    photos = [rng.standard_normal((3, SIZE, SIZE)).astype(np.float32) if p else None for p in present]
    pixels, index = image_inputs(photos, SIZE)
    return {"input_ids": ids.astype(np.int64), "attention_mask": mask, "pixel_values": pixels, "image_index": index}


def test_onnx_matches_pytorch_on_every_input_kind(exported):
    model, path = exported
    rng = np.random.default_rng(1)
    batches = {"mixed": feeds(rng, 4, 9, [True, False, True, False]), "text_only": feeds(rng, 3, 16, [False] * 3),
               "image_only": feeds(rng, 3, 2, [True] * 3, text=False), "batch_1": feeds(rng, 1, 5, [True])}
    session = ort_session(path)
    ref = [run_torch(model, f) for f in batches.values()]
    cand = [run_ort(session, f) for f in batches.values()]
    parity = compare(ref, cand, list(batches.values()), list(batches), top_k=2)
    assert parity.max_abs_logit_diff < 1e-4
    assert parity.label_agreement == 1.0 and parity.patch_topk_agreement == 1.0
    assert set(parity.by_kind) == set(batches)
    # the text-only rows have no patch scores at all; mixed rows without a photo neither
    assert float(np.abs(cand[1][2]).max()) == 0.0
    assert float(np.abs(cand[0][2][[1, 3]]).max()) == 0.0


def test_patch_keep_removes_patches_as_tokens_in_the_graph_as_in_pytorch(exported):
    """The exported graph takes `patch_keep`: 0 removes a patch (no score, no part in the answer),
    the same in ONNX Runtime as in PyTorch; all ones is what a caller that omits it gets."""
    from crisislens.runtime.backends.feeds import model_feeds

    model, path = exported
    session = ort_session(path)
    assert [i.name for i in session.get_inputs()][-1] == "patch_keep"
    assert session.get_inputs()[-1].shape[1] == GRID * GRID
    f = feeds(np.random.default_rng(4), 3, 7, [True, True, False])
    full = run_ort(session, f)
    assert np.array_equal(run_ort(session, model_feeds(f, ["input_ids", "attention_mask", "pixel_values", "image_index",
                                                           "patch_keep"], GRID * GRID))[0], full[0])
    keep = np.ones((3, GRID * GRID), np.int64)
    keep[0, :4] = 0
    keep[1, :] = 0  # every patch removed: the photo takes no part
    cut = {**f, "patch_keep": keep}
    ref, cand = run_torch(model, cut), run_ort(session, cut)
    assert np.abs(ref[0] - cand[0]).max() < 1e-4 and np.abs(ref[2] - cand[2]).max() < 1e-4
    assert float(np.abs(cand[2][0, :4]).max()) == 0.0 and float(cand[2][0, 4:].max()) > 0.0
    assert float(np.abs(cand[2][1]).max()) == 0.0
    assert not np.allclose(cand[0][0], full[0][0])  # the answer moved with the removed patches
    assert np.allclose(cand[0][2], full[0][2], atol=1e-6)  # no photo: nothing to remove


def test_quantised_and_half_variants_run_and_stay_close(exported, tmp_path):
    _, path = exported
    rng = np.random.default_rng(2)
    calib = []
    for i in range(6):
        f = feeds(rng, 1, 5 + i, [i % 2 == 0])
        calib.append({k: v[0] for k, v in f.items()})
    int8 = quantize_dynamic(path, tmp_path / "model.int8.onnx", "avx512_vnni")
    arm = quantize_dynamic(path, tmp_path / "model.int8-arm64.onnx", "arm64")
    qdq = quantize_static_qdq(path, tmp_path / "model.int8-qdq.onnx", calib)
    half = convert_fp16(path, tmp_path / "model.fp16.onnx")
    # the word-embedding table dominates this tiny model: int8 must shrink the file a lot
    assert int8.stat().st_size < 0.4 * path.stat().st_size
    import onnx

    ops = {n.op_type for n in onnx.load(str(qdq)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # explicit quantisation for TensorRT
    f = feeds(rng, 2, 8, [True, False])
    ref = run_ort(ort_session(path), f)[0]
    for variant in (int8, arm, qdq, half):
        out = run_ort(ort_session(variant), f)[0]
        assert out.shape == ref.shape and np.isfinite(out).all()
        assert np.abs(out - ref).max() < 0.5, variant.name


def test_weight_only_int8_keeps_fp32_compute_and_shrinks_the_file(exported, tmp_path):
    import onnx
    from onnx import numpy_helper

    from crisislens.export.quantize import quantize_weights_only

    _, path = exported
    w8 = quantize_weights_only(path, tmp_path / "model.int8-w8a32.onnx")
    assert w8.stat().st_size < 0.4 * path.stat().st_size
    model = onnx.load(str(w8))
    dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    assert dq and not any(n.op_type in ("QuantizeLinear", "DynamicQuantizeLinear", "MatMulInteger") for n in model.graph.node)
    inits = {t.name: t for t in model.graph.initializer}
    for node in dq:  # int8 weights with one scale per output channel, dequantised for FP32 compute
        q, scale = (numpy_helper.to_array(inits[i]) for i in node.input[:2])
        axis = next(a.i for a in node.attribute if a.name == "axis")
        assert q.dtype == np.int8 and scale.shape == (q.shape[axis],) and np.abs(q).max() <= 127
    from crisislens.runtime.backends.ort import session_options

    assert session_options("weight-only").get_session_config_entry("session.disable_quant_qdq") == "1"
    try:
        other = session_options("dynamic").get_session_config_entry("session.disable_quant_qdq")
    except Exception:  # noqa: BLE001 - onnxruntime raises when the entry is not set
        other = None
    assert other in (None, "", "0")
    rng = np.random.default_rng(3)
    f = feeds(rng, 3, 9, [True, False, True])
    ref, cand = run_ort(ort_session(path), f), run_ort(ort_session(w8, quantization="weight-only"), f)
    assert np.abs(cand[0] - ref[0]).max() < 0.05  # weight rounding only: far closer than dynamic int8
    assert (cand[0].argmax(1) == ref[0].argmax(1)).all()


def test_graph_optimisation_fuses_and_keeps_the_outputs(exported, tmp_path):
    import onnx

    from crisislens.export.optimize import optimize_graph

    _, path = exported
    out, fused = optimize_graph(path, tmp_path / "model.fp32-opt.onnx")
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert fused and set(fused) <= ops | {"Gelu", "BiasGelu", "FastGelu"}  # what it says it fused is in the file
    assert "LayerNormalization" in ops or "SkipLayerNormalization" in ops
    f = feeds(np.random.default_rng(4), 2, 7, [True, False])
    ref, cand = run_ort(ort_session(path), f), run_ort(ort_session(out), f)
    for a, b in zip(ref, cand):
        assert np.abs(a - b).max() < 1e-4


@pytest.fixture
def bundle(tiny_bundle):
    return tiny_bundle


def test_engine_predicts_from_real_posts_without_crashing(bundle):
    from crisislens.runtime.engine import Engine
    from crisislens.runtime.readers import read_posts

    engine = Engine(load_bundle(bundle))
    posts = read_posts([FIXTURES / "posts.jsonl"]).posts
    preds = engine.predict(posts)
    assert [p.post_id for p in preds] == [p.id for p in posts]
    for post, pred in zip(posts, preds):
        assert abs(sum(pred.probabilities.values()) - 1.0) < 1e-6
        assert pred.model_id.endswith(":fp32")
        if post.text:
            assert [t.text for t in pred.token_rationale] == post.text.split()[: len(pred.token_rationale)]
        if post.image is None:
            assert pred.patch_rationale is None
    with_image = [pred for post, pred in zip(posts, preds) if post.image is not None]
    assert with_image and all(len(p.patch_rationale) == GRID for p in with_image if p.patch_rationale is not None)


def test_engine_keeps_a_post_whose_image_is_broken(bundle, tmp_path):
    from crisislens.runtime.engine import Engine
    from crisislens.runtime.schema import Post

    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    engine = Engine(load_bundle(bundle))
    [pred] = engine.predict([Post(id="x", text="bridge down on route 9", image=bad)])
    assert pred.patch_rationale is None
    assert any("image not used" in w for w in pred.input_warnings)


def test_restricted_classes_renormalise(bundle):
    from crisislens.runtime.engine import Engine
    from crisislens.runtime.schema import Post

    engine = Engine(load_bundle(bundle))
    classes = ["not_humanitarian", "affected_individuals"]
    [pred] = engine.predict([Post(id="x", text="people trapped")], classes=classes)
    assert pred.label in classes
    assert sum(pred.probabilities[c] for c in classes) == pytest.approx(1.0)
    assert all(pred.probabilities[c] == 0.0 for c in LABEL_NAMES if c not in classes)
    with pytest.raises(ValueError, match="unknown class"):
        engine.predict([Post(id="y", text="x")], classes=["floods"])


def test_evaluate_bundle_on_labelled_posts(bundle, tmp_path):
    from crisislens.evaluation.evaluate import evaluate_bundle

    rows = [{"id": f"p{i}", "text": f"post number {i} about the flood", "label": LABEL_NAMES[i % 5]} for i in range(10)]
    rows.append({"id": "unlabelled", "text": "no gold"})
    rows.append({"id": "blank", "text": "\u200b", "label": "not_humanitarian"})  # nothing left after cleaning
    path = tmp_path / "gold.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    result = evaluate_bundle(bundle, [path], batch_size=4)
    assert result["n"] == 11 and result["skipped_unlabelled"] == 1
    assert result["without_evidence"] == 1 and result["with_image_used"] == 0  # still scored, and counted
    assert 0.0 <= result["macro_f1"] <= 1.0 and set(result["per_class"]) == set(LABEL_NAMES)
    assert result["bundle_sha256"] == load_bundle(bundle).sha256


def test_calibrate_fits_a_temperature_per_variant_that_moves_confidences_not_labels(bundle, tmp_path, capsys):
    import shutil

    from crisislens.runtime.cli import main
    from crisislens.runtime.engine import Engine
    from crisislens.evaluation.evaluate import calibrate_bundle
    from crisislens.runtime.schema import Post

    own = tmp_path / "bundle"
    shutil.copytree(bundle, own)  # the shared tiny bundle stays as it is
    words = ["flood", "bridge", "donate", "injured", "road", "water", "shelter", "power", "help", "storm"]
    rng = np.random.default_rng(5)
    rows = [{"id": f"d{i}", "text": " ".join(rng.choice(words, 5)), "label": LABEL_NAMES[i % 5]} for i in range(40)]
    held_out = tmp_path / "dev.jsonl"
    held_out.write_text("\n".join(json.dumps(r) for r in rows))
    posts = [Post(id=f"q{i}", text=" ".join(rng.choice(words, 5))) for i in range(8)]
    raw = Engine(load_bundle(own)).predict(posts)

    result = calibrate_bundle(own, [held_out], dataset="test-posts")
    loaded = load_bundle(own)
    assert set(result) == set(loaded.variants)
    for name, r in result.items():
        assert loaded.variant(name).temperature == pytest.approx(r["temperature"]) and r["temperature"] != 1.0
        assert r["n"] == 40 and r["fitted_on"] == "test-posts" and r["nll_after"] <= r["nll_before"] + 1e-12
        assert loaded.variant(name).metrics["calibration"]["nll_after"] == r["nll_after"]
    engine = Engine(loaded)
    scaled = engine.predict(posts)
    assert [p.label for p in scaled] == [p.label for p in raw]  # a temperature never changes the label
    t = engine.temperature
    for a, b in zip(raw, scaled):
        logits = np.log([a.probabilities[n] for n in LABEL_NAMES]) / t
        expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        assert np.allclose([b.probabilities[n] for n in LABEL_NAMES], expected, atol=1e-6)
    again = calibrate_bundle(own, [held_out], dataset="test-posts")  # fitted from temperature 1 again
    assert {n: r["temperature"] for n, r in again.items()} == pytest.approx({n: r["temperature"] for n, r in result.items()})

    root = tmp_path / "data"
    (root / "crisismmd").mkdir(parents=True)
    (root / "images" / "crisismmd").mkdir(parents=True)
    shutil.copy(Path(__file__).parent / "fixtures" / "posts" / "crisismmd" / "task_humanitarian_sample.tsv",
                root / "crisismmd" / "task_humanitarian_text_img_agreed_lab_dev.tsv")
    capsys.readouterr()
    assert main(["export", "calibrate", "--bundle", str(own), "--data-root", str(root)]) == 0
    out = capsys.readouterr().out
    assert all(f"{name}: temperature " in out for name in loaded.variants) and "3 crisismmd:dev posts" in out
    assert main(["export", "calibrate", "--bundle", str(own), "--variants", "nope", "--data-root", str(root)]) == 2
    assert "no variant 'nope'" in capsys.readouterr().err


def test_image_inputs_and_slicing_keep_each_post_with_its_photo():
    from crisislens.runtime.backends.feeds import image_inputs, slice_feeds

    photos = [None, np.full((3, 2, 2), 1.0, np.float32), None, np.full((3, 2, 2), 3.0, np.float32)]
    pixels, index = image_inputs(photos, 2)
    assert pixels.shape == (2, 3, 2, 2) and index.tolist() == [-1, 0, -1, 1]
    none, idx = image_inputs([None, None], 2)
    assert none.shape == (1, 3, 2, 2) and idx.tolist() == [-1, -1]  # one masked placeholder
    feeds = {"input_ids": np.arange(8).reshape(4, 2), "attention_mask": np.ones((4, 2), np.int64),
             "pixel_values": pixels, "image_index": index}
    part = slice_feeds(feeds, 2, 4)
    assert part["image_index"].tolist() == [-1, 0] and float(part["pixel_values"][0, 0, 0, 0]) == 3.0
    empty = slice_feeds(feeds, 0, 1)
    assert empty["image_index"].tolist() == [-1] and empty["pixel_values"].shape == (1, 3, 2, 2)


def test_engine_slices_photo_batches_without_changing_results(bundle, tmp_path):
    from crisislens.runtime.engine import Engine
    from crisislens.runtime.schema import Post

    image = FIXTURES / "images" / "bridge.jpg"
    posts = [Post(id=str(i), text=f"bridge {i} down", image=image if i % 3 else None) for i in range(7)]
    whole = Engine(load_bundle(bundle), image_batch=32).predict(posts)
    sliced = Engine(load_bundle(bundle), image_batch=2).predict(posts)
    for a, b in zip(whole, sliced):
        assert a.label == b.label and (a.patch_rationale is None) == (b.patch_rationale is None)
        if a.patch_rationale is not None:
            np.testing.assert_allclose(np.array(a.patch_rationale), np.array(b.patch_rationale), atol=1e-5)
        assert a.probabilities == pytest.approx(b.probabilities, abs=1e-5)


def test_runtime_inputs_are_the_training_inputs(bundle):
    """The runtime feeds the model exactly what training and export computed for a post: the
    same tokenizer file and text cleaning, the same image decoding and normalisation."""
    from crisislens.runtime.engine import Engine
    from crisislens.runtime.preprocessing import ImageConfig, TextConfig, TextEncoder, load_image
    from crisislens.runtime.schema import Post
    from tests.tiny_bundle import minilm_tokenizer

    post = Post(id="x", text="Bridge on route 9 COLLAPSED!! http://t.co/abc \x1b[31m", image=FIXTURES / "images" / "bridge.jpg")
    prep = Engine(load_bundle(bundle)).prepare([post])
    enc = TextEncoder.from_file(minilm_tokenizer(), TextConfig(max_length=MAX_LEN)).encode_batch([post.text])
    np.testing.assert_array_equal(prep.feeds["input_ids"], enc.input_ids)
    pixels, _ = load_image(post.image, ImageConfig(size=SIZE, patch_grid=GRID))
    np.testing.assert_array_equal(prep.feeds["pixel_values"][0], pixels)
    assert prep.feeds["image_index"].tolist() == [0]


def test_the_graph_fixes_the_photo_size_and_tensorrt_profiles_follow_it(exported, tmp_path):
    from crisislens.export import tensorrt as T

    _, path = exported
    assert T.onnx_image_size(path) == SIZE
    assert T.profile_image_size(path) == SIZE
    (profile, *_) = T._profiles_for(Path(path))
    assert profile.shapes["pixel_values"].max[2:] == (SIZE, SIZE)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"x")
    assert T.profile_image_size(broken) == T.DEFAULT_IMAGE_SIZE


def test_dynamic_int8_is_scored_a_post_at_a_time_like_the_runtime(exported, tmp_path):
    """Dynamic INT8 takes its activation scales from the whole call, so the export scores such a
    variant per post, each cut to its own tokens, as `Engine` runs it."""
    from crisislens.export.pipeline import score
    from crisislens.runtime.backends.feeds import slice_feeds

    _, path = exported
    rng = np.random.default_rng(5)
    session = ort_session(quantize_dynamic(path, tmp_path / "model.int8.onnx", "avx512_vnni"))
    batch = feeds(rng, 4, 10, [True, False, True, False])
    gold = [LABEL_NAMES[0]] * 4
    _, per_post = score(session, [batch], gold, per_post=True)
    _, together = score(session, [batch], gold)
    assert per_post.shape == together.shape == (4, 5)
    for i in range(4):
        one = slice_feeds(batch, i, i + 1)
        n = int(one["attention_mask"][0].sum())
        one["input_ids"], one["attention_mask"] = one["input_ids"][:, :n], one["attention_mask"][:, :n]
        assert np.allclose(per_post[i], run_ort(session, one)[0], atol=1e-6)


def test_gelu_projections_are_found_and_left_out_of_the_qdq_model(exported, tmp_path):
    import onnx

    from crisislens.export.quantize import gelu_projections

    model, path = exported
    found = gelu_projections(path)
    graph = onnx.load(str(path)).graph
    ops = {n.name: n.op_type for n in graph.node}
    gelus = sum(n.op_type == "Erf" for n in graph.node)
    # one projection into and one out of every GELU: the text layers' FFNs, fusion FFN, classifier
    assert gelus >= 2 and len(found["up"]) == gelus and len(found["down"]) == gelus
    assert all(ops[n] in ("MatMul", "Gemm") for n in found["up"] + found["down"])
    assert not set(found["up"]) & set(found["down"])
    rng = np.random.default_rng(4)
    calib = [{k: v[0] for k, v in feeds(rng, 1, 6, [True]).items()} for _ in range(4)]

    def quantised(q):  # nodes whose weight input comes out of a DequantizeLinear
        g = onnx.load(str(q)).graph
        dq = {o for n in g.node if n.op_type == "DequantizeLinear" for o in n.output}
        return {n.name for n in g.node if n.op_type in ("MatMul", "Gemm") and any(i in dq for i in n.input)}

    kept = quantised(quantize_static_qdq(path, tmp_path / "kept.onnx", calib))
    every = quantised(quantize_static_qdq(path, tmp_path / "all.onnx", calib, keep_gelu_projections=False))
    assert not kept & set(found["up"] + found["down"]) and kept  # the others are still int8
    assert set(found["up"] + found["down"]) <= every


def test_dynamic_int8_has_one_weight_scale_per_output_column(exported, tmp_path):
    import onnx
    from onnx import numpy_helper

    _, path = exported
    model = onnx.load(str(path))
    widths = {t.name: t.dims[-1] for t in model.graph.initializer if len(t.dims) == 2}

    def scales(q):  # zero points (one per scale) of each MatMulInteger with a stored weight
        g = onnx.load(str(q)).graph
        inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        return [inits[n.input[3]].size for n in g.node if n.op_type == "MatMulInteger" and n.input[3] in inits]

    per = scales(quantize_dynamic(path, tmp_path / "pc.onnx", "avx512_vnni"))
    one = scales(quantize_dynamic(path, tmp_path / "pt.onnx", "avx512_vnni", per_channel=False))
    assert per and set(one) == {1} and max(per) > 1 and max(per) in widths.values()


def test_dynamic_int8_can_keep_the_projections_out_of_each_gelu_in_fp32(exported, tmp_path):
    import onnx

    from crisislens.export.quantize import gelu_projections

    _, path = exported
    down = set(gelu_projections(path)["down"])

    def float_projections(q):  # MatMul/Gemm nodes left in float (a Gemm is split into <name>_MatMul + Add)
        return {n.name.removesuffix("_MatMul") for n in onnx.load(str(q)).graph.node if n.op_type in ("MatMul", "Gemm")}

    kept = quantize_dynamic(path, tmp_path / "kept.onnx", "avx512_vnni", keep_gelu_down=True)
    plain = quantize_dynamic(path, tmp_path / "plain.onnx", "avx512_vnni")
    assert down and down <= float_projections(kept)
    assert not down & float_projections(plain)
    integer = sum(n.op_type == "MatMulInteger" for n in onnx.load(str(kept)).graph.node)
    assert integer and integer < sum(n.op_type == "MatMulInteger" for n in onnx.load(str(plain)).graph.node)
