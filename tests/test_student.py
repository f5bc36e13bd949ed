"""The student on tiny random models: one pass, rationale-weighted prediction, distillation loss,
initialisation from the teacher, checkpoints, the export wrapper and the teacher-output store."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from crisislens.distill.student import (  # noqa: E402
    DistillWeights,
    RationaleStudent,
    StudentConfig,
    StudentExport,
    TeacherTargets,
    distill_loss,
    load_student,
    save_student,
    student_from_teacher,
    truncated_bert,
)
from crisislens.distill.teacher_outputs import TeacherOutputsError, TeacherOutputStore  # noqa: E402
from tests.test_teacher import batch, tiny_bert, tiny_teacher  # noqa: E402

D = 32


def tiny_student_config(**kw) -> StudentConfig:
    base = dict(hidden=D, text_layers=2, frozen_text_layers=1, fusion_heads=4, fusion_ffn=64, image_channels=16,
                patch_grid=3, top_k_patches=2, transfer_dim=D)
    base.update(kw)
    return StudentConfig(**base)


def tiny_student(**kw) -> RationaleStudent:
    torch.manual_seed(0)
    return RationaleStudent(tiny_student_config(**kw), truncated_bert(tiny_bert(), 2))


class PixelTower(torch.nn.Module):
    """Stands in for EfficientNet: [B, 3, 6, 6] pixels -> [B, 9, 16] patch features."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 16, 2, stride=2)

    def forward(self, pixel_values):
        return self.conv(pixel_values).flatten(2).transpose(1, 2)


HEADS = {"transfer": {}, "mlp": {"transfer_dim": 0}}


@pytest.mark.parametrize("head", HEADS)
def test_forward_shapes_masks_and_rationales(head):
    model = tiny_student(**HEADS[head]).eval()
    with torch.no_grad():
        out = model(batch())
    assert out.logits.shape == (3, 5)
    assert out.token_scores.shape == (3, 7) and out.patch_scores.shape == (3, 9)
    # special tokens, padding and absent images never score
    assert float(out.token_scores[:, 0].abs().max()) == 0.0
    assert float(out.patch_scores[1].abs().max()) == 0.0
    assert not out.patch_rationale[1].any()
    assert out.patch_rationale[0].sum() == 2 and out.patch_rationale[2].sum() == 2
    assert out.token_rationale[0].sum() >= 2  # the minimum rationale size
    assert not out.token_rationale[2].any()  # no words, no word rationale


@pytest.mark.parametrize("head", HEADS)
def test_prediction_depends_only_on_rationale_weighted_pooling(head):
    """Zeroing the scores of everything leaves only the classifier bias: the class is computed
    from the weighted evidence, not from a side channel. (The transfer head's patch scores are
    carried token scores: zero words, zero patches.)"""
    model = tiny_student(**HEADS[head]).eval()
    inputs = batch()
    with torch.no_grad():
        model.token_head.bias.fill_(-1e4)
        if head == "mlp":
            model.patch_head[-1].bias.fill_(-1e4)
        a = model(inputs).logits
        inputs.image_features = torch.randn_like(inputs.image_features)
        inputs.input_ids[:, 1:4] = 50
        b = model(inputs).logits
    assert torch.allclose(a, b, atol=1e-5)


def test_skip_empty_image_path_matches_the_full_graph():
    model = tiny_student().eval()
    inputs = batch(image_present=(False, False, False))
    with torch.no_grad():
        fast = model(inputs)
        model.skip_empty_image = False
        full = model(inputs)
    assert torch.allclose(fast.logits, full.logits, atol=1e-5)
    assert torch.allclose(fast.token_scores, full.token_scores, atol=1e-5)


def test_initialised_from_the_teacher():
    teacher = tiny_teacher(text_layers=3, frozen_text_layers=2)
    config = tiny_student_config(text_layers=2, frozen_text_layers=1)
    student = student_from_teacher(teacher, config)
    assert len(student.text.bert.encoder.layer) == 2
    t_layer = teacher.backbone.text.bert.encoder.layer[1].attention.self.query.weight
    assert torch.equal(student.text.bert.encoder.layer[1].attention.self.query.weight, t_layer)
    assert torch.equal(student.patch_proj[1].weight, teacher.backbone.patch_proj[1].weight)
    assert torch.equal(student.fusion.linear1.weight, teacher.backbone.fusion.layers[0].linear1.weight)
    # the copy is independent of the teacher
    with torch.no_grad():
        student.text.bert.encoder.layer[1].attention.self.query.weight.add_(1.0)
    assert not torch.equal(student.text.bert.encoder.layer[1].attention.self.query.weight, t_layer)


def loss_case(model):
    """A batch through `model` and random teacher targets: (out, teacher, content, patch_mask)."""
    inputs = batch()
    out = model(inputs)
    b, n = inputs.input_ids.shape
    teacher = TeacherTargets(torch.randn(b, 5), torch.rand(b, n), torch.rand(b, 9), torch.tensor([True, False, True]))
    content = model.content_mask(inputs.input_ids, inputs.attention_mask)
    return out, teacher, content, inputs.image_present[:, None].expand(b, 9)


@pytest.mark.parametrize("head", HEADS)
def test_distill_loss_terms_and_gradients(head):
    model = tiny_student(**HEADS[head]).train()
    out, teacher, content, patch_mask = loss_case(model)
    human = torch.zeros(content.shape)
    human[0, 1:3] = 1
    loss, parts = distill_loss(out, teacher, torch.tensor([0, 1, 2]), content, patch_mask, DistillWeights(), human,
                               torch.tensor([True, False, False]))
    assert set(parts) == {"kd", "ce", "token_teacher", "token_human", "patch_teacher", "patch_rank", "align", "hidden",
                          "relation"}
    assert all(v > 0 for k, v in parts.items() if k not in ("align", "hidden", "relation"))
    assert parts["align"] == parts["hidden"] == parts["relation"] == 0.0  # no teacher alignment or states given
    loss.backward()
    patch_head = model.align_patch if head == "transfer" else model.patch_head[-1]
    assert model.token_head.weight.grad is not None and patch_head.weight.grad is not None
    assert float(model.token_head.weight.grad.abs().sum()) > 0 and float(patch_head.weight.grad.abs().sum()) > 0


def test_kd_term_is_zero_when_the_student_copies_the_teacher():
    model = tiny_student().eval()
    inputs = batch()
    out = model(inputs)
    b, n = inputs.input_ids.shape
    teacher = TeacherTargets(out.logits.detach().clone(), torch.rand(b, n), torch.rand(b, 9), torch.zeros(b, dtype=torch.bool))
    content = model.content_mask(inputs.input_ids, inputs.attention_mask)
    _, parts = distill_loss(out, teacher, torch.tensor([0, 1, 2]), content, torch.zeros(b, 9, dtype=torch.bool),
                            DistillWeights())
    assert parts["kd"] == pytest.approx(0.0, abs=1e-6)
    assert parts["patch_teacher"] == 0.0 and parts["patch_rank"] == 0.0  # no teacher image -> no patch loss


def test_ablation_weights_drop_only_rationale_terms():
    w = DistillWeights().without_rationale_terms()
    assert w.token_teacher == w.token_human == w.patch_teacher == w.patch_rank == 0.0
    assert w.kd == DistillWeights().kd and w.ce == DistillWeights().ce


def test_checkpoint_round_trip(tmp_path):
    model = tiny_student().eval()
    path = tmp_path / "student.pt"
    save_student(model, path)
    loaded = load_student(path)
    inputs = batch()
    with torch.no_grad():
        assert torch.allclose(model(inputs).logits, loaded(inputs).logits, atol=1e-6)


def test_export_wrapper_runs_from_pixels():
    torch.manual_seed(0)
    model = RationaleStudent(tiny_student_config(), truncated_bert(tiny_bert(), 2), PixelTower()).eval()
    wrapper = StudentExport(model)
    inputs = batch()
    pixels = torch.randn(2, 3, 6, 6)  # photos of posts 0 and 2 only
    with torch.no_grad():
        logits, tokens, patches = wrapper(inputs.input_ids, inputs.attention_mask, pixels, torch.tensor([0, -1, 1]))
        swapped = wrapper(inputs.input_ids, inputs.attention_mask, pixels.flip(0), torch.tensor([1, -1, 0]))[2]
    assert logits.shape == (3, 5) and tokens.shape == (3, 7) and patches.shape == (3, 9)
    assert float(patches[1].abs().max()) == 0.0
    assert torch.allclose(patches, swapped)  # each post gets its own photo, wherever it sits


def _rows(n: int, with_image: set[int]):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        k = 3 + i
        rows.append({"probs": rng.dirichlet(np.ones(5)), "token_scores": rng.random(k).astype(np.float32),
                     "token_rationale": rng.random(k) > 0.5, "has_image": i in with_image,
                     "patch_scores": rng.random(49).astype(np.float32), "patch_rationale": rng.random(49) > 0.8})
    return rows


def test_teacher_output_store_round_trip(tmp_path):
    rows = _rows(4, {1, 3})
    keys = [f"crisismmd:{i}" for i in range(4)]
    store = TeacherOutputStore.from_rows(keys, rows, {"teacher": "x"})
    path = tmp_path / "out.npz"
    store.save(path)
    loaded = TeacherOutputStore.load(path)
    assert loaded.meta["teacher"] == "x" and len(loaded) == 4
    for key, row in zip(keys, rows):
        got = loaded.row(key)
        np.testing.assert_allclose(got["token_scores"], row["token_scores"], atol=1e-3)
        np.testing.assert_array_equal(got["token_rationale"], row["token_rationale"])
        np.testing.assert_allclose(np.exp(got["logits"]), row["probs"], rtol=1e-5)
        assert got["has_image"] == row["has_image"]
        if row["has_image"]:
            np.testing.assert_allclose(got["patch_scores"], row["patch_scores"], atol=1e-3)
            np.testing.assert_array_equal(got["patch_rationale"], row["patch_rationale"])
        else:
            assert not got["patch_scores"].any()
    with pytest.raises(TeacherOutputsError, match="crisismmd:99"):
        loaded.row("crisismmd:99")


def test_teacher_output_store_refuses_other_files(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros(3))
    with pytest.raises(TeacherOutputsError, match="bad.npz"):
        TeacherOutputStore.load(bad)
    with pytest.raises(FileNotFoundError, match="teacher-outputs"):
        TeacherOutputStore.load(tmp_path / "missing.npz")


def _out(probs, content, tokens, patches, has_image):
    return {"probs": np.array(probs), "content": np.array(content, bool), "token_rationale": np.array(tokens, bool),
            "patch_rationale": np.array(patches, bool), "has_image": has_image}


def test_agreement_metrics_on_a_hand_worked_case():
    from crisislens.distill.eval_student import agreement

    teacher = [_out([0.9, 0.1], [0, 1, 1, 1, 0], [0, 1, 1, 0, 0], [1, 1, 0, 0], True),
               _out([0.2, 0.8], [0, 1, 1, 0, 0], [0, 1, 0, 0, 0], [0, 0, 0, 0], False)]
    student = [_out([0.6, 0.4], [0, 1, 1, 1, 0], [0, 1, 0, 1, 0], [1, 0, 1, 0], True),
               _out([0.7, 0.3], [0, 1, 1, 0, 0], [0, 1, 0, 0, 0], [0, 0, 0, 0], False)]
    a = agreement(teacher, student)
    assert a["label_agreement"] == 0.5
    # teacher tokens {1,2} + {1}; student {1,3} + {1}: tp 2, fp 1, fn 1 -> F1 2/3
    assert a["token_rationale_vs_teacher"]["micro_f1"] == pytest.approx(2 / 3)
    # patches {0,1} vs {0,2}: IoU 1/3, only the row with an image counts
    assert a["patch_topk_iou_vs_teacher"] == pytest.approx(1 / 3) and a["n_with_image"] == 1




def test_student_and_teacher_outputs_share_one_per_example_format():
    from crisislens.distill.eval_teacher import teacher_outputs
    from crisislens.distill.train_student import student_outputs

    inputs = batch()
    s = student_outputs(tiny_student(), lambda rows: inputs, [0, 1, 2])
    t = teacher_outputs(tiny_teacher(), lambda rows: inputs, [0, 1, 2])
    assert len(s) == len(t) == 3
    assert set(t[0]) - set(s[0]) == {"full_probs"}  # only the teacher has a full-input head
    assert [len(o["token_scores"]) for o in s] == [int(m) for m in inputs.attention_mask.sum(1)]


def test_checkpoints_from_before_the_resolution_field_load_as_224_px_with_a_linear_patch_head(tmp_path):
    config = StudentConfig.from_dict({k: v for k, v in tiny_student_config().to_dict().items()
                                      if k not in ("image_size", "patch_head_hidden", "image_blocks", "transfer_dim")})
    assert config.image_size == 224 and config.patch_head_hidden == 0
    assert config.image_blocks is None and config.transfer_dim == 0  # the whole tower, a free patch head
    old = RationaleStudent(config, truncated_bert(tiny_bert(), 2))
    assert isinstance(old.patch_head, torch.nn.Linear)
    save_student(old, tmp_path / "old.pt")
    loaded = load_student(tmp_path / "old.pt")
    assert loaded.config.image_size == 224 and isinstance(loaded.patch_head, torch.nn.Linear)
    new = StudentConfig()  # new students: 112 px through the tower cut after stage 5, transfer head
    assert (new.image_size, new.image_blocks, new.image_channels, new.transfer_dim) == (112, 11, 112, 384)


def test_image_tower_resamples_a_smaller_grid_to_the_patch_layout():
    from crisislens.distill.teacher import ImageTower

    class Net(torch.nn.Module):  # EfficientNet's 32x downsampling: 192 px -> 6 x 6, 224 px -> 7 x 7
        def extract_features(self, pixels):
            return torch.nn.functional.avg_pool2d(pixels[:, :1].expand(-1, 4, -1, -1), 32)

    pixels = torch.rand(2, 3, 192, 192, generator=torch.Generator().manual_seed(0))
    out = ImageTower(Net(), grid=7)(pixels)
    assert out.shape == (2, 49, 4)
    # bilinear: the corners of the 7 x 7 layout stay inside the range of the 6 x 6 grid
    six = Net().extract_features(pixels).flatten(2)
    assert float(out.min()) >= float(six.min()) - 1e-6 and float(out.max()) <= float(six.max()) + 1e-6
    assert torch.allclose(out[:, 0], six[:, :, 0]) and torch.allclose(out[:, -1], six[:, :, -1])  # corners kept
    same = ImageTower(Net(), grid=7)(torch.ones(1, 3, 224, 224))
    assert same.shape == (1, 49, 4) and torch.allclose(same, torch.ones_like(same))
    assert ImageTower(Net(), grid=None)(pixels).shape == (2, 36, 4)  # the network's own grid


def test_rows_without_a_gold_label_add_no_cross_entropy():
    out, teacher, content, patch_mask = loss_case(tiny_student().eval())
    w = DistillWeights()
    _, only_gold = distill_loss(out, teacher, torch.tensor([0, 1, 2]), content, patch_mask, w)
    _, mixed = distill_loss(out, teacher, torch.tensor([0, -100, 2]), content, patch_mask, w)
    expected = torch.nn.functional.cross_entropy(out.logits[[0, 2]], torch.tensor([0, 2]))
    assert mixed["ce"] == pytest.approx(float(expected), rel=1e-5) and mixed["kd"] == only_gold["kd"]
    total, none = distill_loss(out, teacher, torch.tensor([-100, -100, -100]), content, patch_mask, w)
    assert none["ce"] == 0.0 and torch.isfinite(total)


def test_merged_teacher_outputs_take_each_row_from_the_store_that_has_it():
    from crisislens.distill.teacher_outputs import merge_outputs

    def row(p, n, image):
        return {"probs": np.array(p), "token_scores": np.linspace(0, 1, n), "token_rationale": np.arange(n) % 2 == 0,
                "has_image": image, "patch_scores": np.full(49, 0.25 if image else 0.0),
                "patch_rationale": np.arange(49) < 5}

    a = TeacherOutputStore.from_rows(["x", "y"], [row([.6, .1, .1, .1, .1], 3, False), row([.2] * 5, 4, True)], {})
    b = TeacherOutputStore.from_rows(["pair:z"], [row([.1, .6, .1, .1, .1], 2, True)], {})
    merged = merge_outputs(["pair:z", "x", "y"], [a, b], {"teacher": "t"})
    assert merged.keys == ["pair:z", "x", "y"] and merged.meta == {"teacher": "t"}
    for key, store in (("x", a), ("y", a), ("pair:z", b)):
        got, want = merged.row(key), store.row(key)
        assert np.allclose(got["logits"], want["logits"], atol=1e-6)
        assert np.array_equal(got["token_rationale"], want["token_rationale"]) and got["has_image"] == want["has_image"]
        assert np.allclose(got["patch_scores"], want["patch_scores"])
    with pytest.raises(TeacherOutputsError, match="'w'"):
        merge_outputs(["w"], [a, b], {})


def test_latency_runs_the_models_in_turns_and_swaps_who_goes_first():
    from crisislens.distill.eval_student import interleaved_ms

    calls = []

    def model(name):
        return lambda x: calls.append((name, x))

    inputs = {"teacher": ["t0", "t1", "t2"], "student": ["s0", "s1", "s2"]}
    out = interleaved_ms({"teacher": model("teacher"), "student": model("student")}, inputs, warmup=1, rounds=2)
    timed = calls[2:]  # after one warm-up call each
    assert calls[:2] == [("teacher", "t0"), ("student", "s0")]
    assert timed[:6] == [("teacher", "t0"), ("student", "s0"), ("student", "s1"), ("teacher", "t1"),
                         ("teacher", "t2"), ("student", "s2")]
    assert timed[6:8] == [("student", "s0"), ("teacher", "t0")]  # the second round starts the other way round
    assert out["teacher"]["runs"] == out["student"]["runs"] == 6
    assert all(v["median_ms"] >= 0 for v in out.values())


def test_transfer_head_carries_token_scores_over_its_attention():
    """Each patch's score is its attention over the content tokens times their scores: inside
    the range of the post's token scores, 0 without words, and nothing flows back into the
    token scores from the patch side."""
    model = tiny_student().eval()
    inputs = batch()
    with torch.no_grad():
        out = model(inputs)
    content = model.content_mask(inputs.input_ids, inputs.attention_mask)
    for i in (0, 2):
        if not content[i].any():
            assert float(out.patch_scores[i].abs().max()) == 0.0  # a photo without words
            continue
        r = out.token_scores[i][content[i]]
        assert float(out.patch_scores[i].min()) >= float(r.min()) - 1e-5
        assert float(out.patch_scores[i].max()) <= float(r.max()) + 1e-5
    # a very high temperature spreads each patch evenly over the words: every patch scores their mean
    with torch.no_grad():
        model.align_log_temperature.fill_(20.0)
        flat = model(inputs)
    assert torch.allclose(flat.patch_scores[0], flat.token_scores[0][content[0]].mean().expand(9), atol=1e-5)
    model = tiny_student().train()
    out = model(inputs)
    out.patch_scores.sum().backward()
    assert model.token_head.weight.grad is None or float(model.token_head.weight.grad.abs().sum()) == 0.0
    assert float(model.align_token.weight.grad.abs().sum()) > 0


def test_transfer_rank_term_is_zero_when_shares_match_up_to_a_constant():
    model = tiny_student().eval()
    out, teacher, content, patch_mask = loss_case(model)
    s = out.patch_scores.detach()
    teacher.patch_scores = s - s.min(1, keepdim=True).values  # a shift per post
    w = DistillWeights(kd=0, ce=0, token_teacher=0, token_human=0, patch_teacher=0)
    _, parts = distill_loss(out, teacher, torch.tensor([0, 1, 2]), content, patch_mask, w)
    assert parts["patch_rank"] == pytest.approx(0.0, abs=1e-5)


def test_student_image_tower_checks_the_cut_against_the_config():
    from crisislens.distill.student import student_image_tower
    from crisislens.distill.teacher import tower_channels

    assert tower_channels(None) == 1280 and tower_channels(11) == 112 and tower_channels(16) == 320
    with pytest.raises(ValueError, match="1..16"):
        tower_channels(17)
    with pytest.raises(ValueError, match="image_channels=1280"):
        student_image_tower(StudentConfig(image_blocks=11, image_channels=1280))


def test_cut_image_tower_on_the_real_network_gives_the_teachers_grid_at_112_px():
    pytest.importorskip("efficientnet_lite_pytorch")
    from crisislens.distill.student import student_image_tower
    from crisislens.distill.teacher import LITE0_BLOCK_CHANNELS, ImageTower

    tower = student_image_tower(StudentConfig())
    assert [int(b._project_conv.out_channels) for b in tower.net._blocks] == list(LITE0_BLOCK_CHANNELS)
    pixels = torch.rand(2, 3, 112, 112, generator=torch.Generator().manual_seed(0))
    grid = tower.features(pixels)
    assert grid.shape == (2, 112, 7, 7)  # stride 16: the 7 x 7 layout with no resampling
    assert torch.equal(tower(pixels), grid.flatten(2).transpose(1, 2))
    whole = ImageTower(tower.net, grid=None)
    assert whole.channels == 1280 and tuple(whole(torch.rand(1, 3, 224, 224)).shape) == (1, 49, 1280)


def test_teacher_alignment_is_what_its_patch_scores_are_made_of(tmp_path):
    """The stored shares: each valid patch's column sums to 1 over the words, and weighting the
    teacher's token scores by them gives its transferred patch scores back."""
    from crisislens.distill.teacher_outputs import AlignmentStore, compute_alignment

    teacher = tiny_teacher().eval()
    inputs = batch()
    with torch.no_grad():
        out = teacher(inputs)
        shares, enc = teacher.alignment(inputs)
    assert torch.allclose(shares[0].sum(0), torch.ones(9), atol=1e-5)
    assert float(shares[1].abs().max()) == 0.0  # no photo
    assert torch.allclose((shares * out.token_scores.unsqueeze(-1)).sum(1), out.patch_scores, atol=1e-5)

    store = compute_alignment(teacher, lambda rows: inputs, ["a"], ["k0", "k1", "k2"], {"teacher_checkpoint_sha256": "x"},
                              batch_size=3)
    assert store.keys == ["k0"]  # post 1 has no photo, post 2 no words
    store.save(tmp_path / "al.npz")
    back = AlignmentStore.load(tmp_path / "al.npz")
    n = int(inputs.attention_mask[0].sum())
    assert back.get("k0").shape == (n, 9) and back.get("k1") is None
    assert np.allclose(back.get("k0"), shares[0, :n].numpy(), atol=1e-3)
    assert not back.has_states and back.states("k0") is None

    with_states = compute_alignment(teacher, lambda rows: inputs, ["a"], ["k0", "k1", "k2"],
                                    {"teacher_checkpoint_sha256": "x"}, batch_size=3, states=True)
    with_states.save(tmp_path / "st.npz")
    back = AlignmentStore.load(tmp_path / "st.npz")
    tokens, patches = back.states("k0")
    assert back.meta["states"] and back.states("k1") is None
    assert np.allclose(tokens, enc.tokens[0, :n].numpy(), atol=2e-3) and np.allclose(patches, enc.patches[0].numpy(), atol=2e-3)
    assert np.allclose(back.get("k0"), shares[0, :n].numpy(), atol=1e-3)
    (tmp_path / "bad.npz").write_bytes(b"nope")
    with pytest.raises(TeacherOutputsError):
        AlignmentStore.load(tmp_path / "bad.npz")


def test_hidden_term_is_zero_on_the_teacher_states_and_trains_the_fused_states():
    model = tiny_student().train()
    out, teacher, content, patch_mask = loss_case(model)
    teacher.token_states = out.token_states.detach().clone() * 2.0  # same directions: cosine 1
    teacher.patch_states = out.patch_states.detach().clone()
    teacher.has_states = torch.tensor([True, True, True])
    w = DistillWeights(kd=0, ce=0, token_teacher=0, token_human=0, patch_teacher=0, patch_rank=0, align=0, hidden=1.0)
    _, parts = distill_loss(out, teacher, torch.tensor([0, 1, 2]), content, patch_mask, w)
    assert parts["hidden"] == pytest.approx(0.0, abs=1e-5)
    teacher.patch_states = -teacher.patch_states  # opposite patch states: 2 per patch
    teacher.has_states = torch.tensor([True, False, True])
    loss, parts = distill_loss(out, teacher, torch.tensor([0, 1, 2]), content, patch_mask, w)
    assert parts["hidden"] == pytest.approx(2.0, abs=1e-4)
    loss.backward()
    assert float(model.fusion.linear2.weight.grad.abs().sum()) > 0 and float(model.patch_proj[1].weight.grad.abs().sum()) > 0
    # weight 0 (the default): reported, not trained on
    model.zero_grad()
    out, teacher, content, patch_mask = loss_case(model)
    teacher.token_states, teacher.patch_states = torch.randn_like(out.token_states), torch.randn_like(out.patch_states)
    teacher.has_states = torch.tensor([True, True, True])
    _, parts = distill_loss(out, teacher, torch.tensor([0, 1, 2]), content, patch_mask, DistillWeights(kd=0))
    assert parts["hidden"] == 0.0


def test_relation_term_is_zero_when_the_student_attends_like_the_one_step_transfer_over_the_teacher_states():
    model = tiny_student().train()
    out, teacher, content, patch_mask = loss_case(model)
    torch.manual_seed(3)
    teacher.token_states, teacher.patch_states = torch.randn_like(out.token_states), torch.randn_like(out.patch_states)
    teacher.has_states = torch.tensor([True, True, True])
    w = DistillWeights(kd=0, ce=0, token_teacher=0, token_human=0, patch_teacher=0, patch_rank=0, align=0, relation=1.0)
    loss, parts = distill_loss(out, teacher, torch.tensor([0, 1, 2]), content, patch_mask, w)
    assert parts["relation"] > 0.1 and parts["hidden"] == 0.0
    loss.backward()
    assert float(model.align_patch.weight.grad.abs().sum()) > 0
    # the student attends exactly as the teacher's own states would at the term's temperature
    sim = torch.nn.functional.normalize(teacher.patch_states, dim=-1) @ torch.nn.functional.normalize(
        teacher.token_states, dim=-1).transpose(1, 2)
    out.alignment = (sim / w.relation_temperature).masked_fill(~content.bool()[:, None, :], float("-inf")).softmax(-1)
    _, parts = distill_loss(out, teacher, torch.tensor([0, 1, 2]), content, patch_mask, w)
    assert parts["relation"] == pytest.approx(0.0, abs=1e-5)
    assert DistillWeights(relation=1.0).without_rationale_terms().relation == 0.0


def test_align_term_is_zero_when_the_student_attends_like_the_teacher_transfers():
    model = tiny_student().eval()
    out, teacher, content, patch_mask = loss_case(model)
    b, m, n = out.alignment.shape
    teacher.alignment = out.alignment.detach().clone()
    teacher.has_alignment = torch.tensor([True, False, True])
    w = DistillWeights(kd=0, ce=0, token_teacher=0, token_human=0, patch_teacher=0, patch_rank=0)
    _, parts = distill_loss(out, teacher, torch.tensor([0, 1, 2]), content, patch_mask, w)
    assert parts["align"] == pytest.approx(0.0, abs=1e-4)
    teacher.alignment = torch.zeros(b, m, n)
    teacher.alignment[..., 1] = 1.0  # every patch from the first word
    loss, parts = distill_loss(out, teacher, torch.tensor([0, 1, 2]), content, patch_mask, w)
    assert parts["align"] > 0.1
    loss.backward()
    assert float(model.align_patch.weight.grad.abs().sum()) > 0


def test_a_second_fusion_layer_is_the_teachers_second_and_keeps_one_layer_names():
    teacher = tiny_teacher(text_layers=3, frozen_text_layers=2, fusion_layers=2)
    two = student_from_teacher(teacher, tiny_student_config(fusion_layers=2))
    layers = teacher.backbone.fusion.layers
    assert torch.equal(two.fusion.linear1.weight, layers[0].linear1.weight)
    assert torch.equal(two.fusion_more[0].linear1.weight, layers[1].linear1.weight)
    one = student_from_teacher(teacher, tiny_student_config())
    assert not any(k.startswith("fusion_more") for k in one.state_dict())  # old checkpoints still load
    # the second layer is used, on both the joint and the text-only path
    two.eval()
    for present in ((True, False, True), (False, False, False)):
        with torch.no_grad():
            before = two(batch(image_present=present)).token_scores
            two.fusion_more[0].linear2.weight.add_(torch.randn_like(two.fusion_more[0].linear2.weight))
            after = two(batch(image_present=present)).token_scores
        assert not torch.allclose(before, after)
    with pytest.raises(ValueError, match="fusion_layers=3"):
        student_from_teacher(teacher, tiny_student_config(fusion_layers=3))


def test_tuned_tower_blocks_start_as_the_cut_tower_and_learn():
    """With the last 3 blocks fine-tuned, the frozen tower stops after block 8 and the student
    runs blocks 9-11 itself: before training, the same features as the frozen 11-block tower;
    the loss reaches their weights, not the frozen tower's; a checkpoint keeps them."""
    pytest.importorskip("efficientnet_lite_pytorch")
    from crisislens.distill.student import frozen_image_blocks, student_image_tower, tuned_image_top
    from crisislens.distill.teacher import ImageTower

    config = tiny_student_config(patch_grid=7, image_channels=112, image_blocks=11, tuned_image_blocks=3)
    assert frozen_image_blocks(config) == 8 and frozen_image_blocks(StudentConfig()) == 11
    tower = student_image_tower(config)
    model = RationaleStudent(config, truncated_bert(tiny_bert(), 2), tower, tuned_image_top(config, tower.net))
    pixels = torch.rand(3, 3, 112, 112, generator=torch.Generator().manual_seed(0))
    inputs = replace(batch(), image_features=None, pixel_values=pixels)
    model.train()
    assert not model.image_top.training  # BatchNorm statistics stay ImageNet's
    feats = model.patch_features(inputs)
    assert torch.allclose(feats, ImageTower(tower.net, grid=7, blocks=11)(pixels), atol=1e-5)
    cached = replace(inputs, pixel_values=None, image_features=tower(pixels))  # the training cache's form
    assert torch.allclose(model.patch_features(cached), feats, atol=1e-5)
    model(cached).patch_scores.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.image_top.parameters())
    assert all(p.grad is None for p in tower.parameters())
    for bad in (dict(image_blocks=None), dict(tuned_image_blocks=11)):
        with pytest.raises(ValueError, match="tuned_image_blocks"):
            frozen_image_blocks(replace(config, **bad))


def test_tuned_tower_blocks_travel_in_the_checkpoint(tmp_path):
    pytest.importorskip("efficientnet_lite_pytorch")
    from crisislens.distill.student import student_image_tower, tuned_image_top

    config = tiny_student_config(patch_grid=7, image_channels=112, image_blocks=11, tuned_image_blocks=3)
    tower = student_image_tower(config)
    model = RationaleStudent(config, truncated_bert(tiny_bert(), 2), tower, tuned_image_top(config, tower.net))
    with torch.no_grad():
        next(model.image_top.parameters()).add_(1.0)
    save_student(model, tmp_path / "s.pt")
    loaded = load_student(tmp_path / "s.pt")
    assert torch.equal(next(loaded.image_top.parameters()), next(model.image_top.parameters()))
    # the export graph runs the frozen tower, then the tuned blocks, from pixels
    loaded.image = tower
    inputs = batch()
    pixels = torch.rand(2, 3, 112, 112, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        exported = StudentExport(loaded)(inputs.input_ids, inputs.attention_mask, pixels, torch.tensor([0, -1, 1]))[2]
        direct = loaded(replace(inputs, image_features=None, pixel_values=pixels[[0, 0, 1]])).patch_scores
    assert torch.allclose(exported[[0, 2]], direct[[0, 2]], atol=1e-5) and float(exported[1].abs().max()) == 0.0
