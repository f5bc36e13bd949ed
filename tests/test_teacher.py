"""The teacher on tiny random models: shapes, masking, rationale-only prediction, loss, ViLT."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from crisislens.distill.teacher import (  # noqa: E402
    CrossModalRationaleTeacher,
    JointEncoder,
    LossWeights,
    TeacherConfig,
    TeacherInputs,
    ViltBackbone,
    teacher_loss,
)
from crisislens.distill.ipot import TransferConfig  # noqa: E402

D = 32


def tiny_bert():
    config = transformers.BertConfig(vocab_size=200, hidden_size=D, num_hidden_layers=3, num_attention_heads=4,
                                     intermediate_size=64, max_position_embeddings=64)
    return transformers.BertModel(config)


def tiny_config(**kw) -> TeacherConfig:
    base = dict(hidden=D, text_layers=3, frozen_text_layers=2, fusion_layers=1, fusion_heads=4, fusion_ffn=64,
                image_channels=16, patch_grid=3, transfer=TransferConfig(iterations=20, top_k=2))
    base.update(kw)
    return TeacherConfig(**base)


def tiny_teacher(**kw) -> CrossModalRationaleTeacher:
    torch.manual_seed(0)
    config = tiny_config(**kw)
    return CrossModalRationaleTeacher(config, JointEncoder(config, tiny_bert()))


def batch(image_present=(True, False, True), text=(True, True, False)) -> TeacherInputs:
    b = len(image_present)
    ids = torch.zeros(b, 7, dtype=torch.long)
    mask = torch.zeros(b, 7, dtype=torch.long)
    for i, has_text in enumerate(text):
        words = [11, 12, 13, 14, 15] if has_text else []
        row = [101, *words, 102]
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    return TeacherInputs(input_ids=ids, attention_mask=mask, image_present=torch.tensor(image_present),
                         image_features=torch.randn(b, 9, 16))


def test_forward_shapes_and_masks():
    model = tiny_teacher().eval()
    inputs = batch()
    out = model(inputs)
    assert out.logits.shape == (3, 5) and out.full_logits.shape == (3, 5)
    assert out.token_scores.shape == (3, 7) and out.patch_scores.shape == (3, 9)
    content = model.content_mask(inputs.input_ids, inputs.attention_mask)
    # specials and padding never carry rationale; every post keeps >= min_rationale_tokens words
    assert torch.all(out.token_scores[~content] == 0)
    assert torch.all(out.token_rationale[~content] == 0)
    assert out.token_rationale[0].sum() >= 2
    # a text-only post has no patches; an image-only post keeps all of its patches
    assert not out.patch_rationale[1].any()
    assert out.patch_rationale[2].all()
    # text + image: exactly top_k patches
    assert out.patch_rationale[0].sum() == 2
    assert torch.isfinite(out.logits).all()


def test_missing_image_is_masked_not_blank():
    """Changing the features of a row without an image must not change its prediction."""
    model = tiny_teacher().eval()
    inputs = batch()
    a = model(inputs).logits[1]
    inputs.image_features[1] = torch.randn(9, 16) * 10
    b = model(inputs).logits[1]
    assert torch.allclose(a, b, atol=1e-5)


def test_prediction_uses_only_rationale_tokens():
    """Changing a non-rationale token's cached state leaves the final logits unchanged."""
    model = tiny_teacher(frozen_text_layers=3, min_rationale_tokens=1, rationale_threshold=2.0).eval()
    inputs = batch(image_present=(False,), text=(True,))
    inputs.text_states = torch.randn(1, 7, D)
    out = model(inputs)
    kept = out.token_rationale[0]
    assert kept.sum() == 1
    dropped = next(i for i in range(1, 6) if not kept[i])
    inputs.text_states[0, dropped] += 3.0 * torch.randn(D)
    out2 = model(inputs)
    # the extractor sees the full input, so re-select with the same kept token before comparing
    if torch.equal(out2.token_rationale, out.token_rationale):
        assert torch.allclose(out.logits, out2.logits, atol=1e-5)
    assert not torch.allclose(out.full_logits, out2.full_logits)


def test_loss_backpropagates_into_extractor_and_skips_unannotated_rows():
    model = tiny_teacher().train()
    inputs = batch()
    out = model(inputs)
    content = model.content_mask(inputs.input_ids, inputs.attention_mask)
    labels = torch.tensor([0, 1, 4])
    rationale = torch.zeros(3, 7)
    rationale[0, 1:3] = 1
    loss, parts = teacher_loss(out, labels, rationale, torch.tensor([True, False, False]), content, LossWeights())
    assert parts["bce"] > 0
    loss.backward()
    grads = [p.grad for p in model.extractor.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    # frozen lower text layers get no gradient
    assert all(p.grad is None for p in model.backbone.text.bert.encoder.layer[0].parameters())
    _, parts = teacher_loss(model(inputs), labels, rationale, torch.tensor([False, False, False]), content,
                            LossWeights())
    assert parts["bce"] == 0.0


def test_cached_and_on_the_fly_text_states_agree():
    model = tiny_teacher().eval()
    inputs = batch()
    a = model(inputs)
    inputs.text_states = model.backbone.text.lower(inputs.input_ids, inputs.attention_mask)
    b = model(inputs)
    assert torch.allclose(a.full_logits, b.full_logits, atol=1e-5)


def test_vilt_backbone_adapter_with_a_tiny_random_config():
    config = transformers.ViltConfig(vocab_size=200, hidden_size=D, num_hidden_layers=1, num_attention_heads=4,
                                     intermediate_size=64, image_size=64, patch_size=16, max_image_length=-1,
                                     max_position_embeddings=16)
    torch.manual_seed(0)
    backbone = ViltBackbone(transformers.ViltModel(config, add_pooling_layer=False))
    teacher_config = tiny_config(patch_grid=4)
    model = CrossModalRationaleTeacher(teacher_config, backbone).eval()
    inputs = batch()
    inputs.image_features = None
    inputs.pixel_values = torch.randn(3, 3, 64, 64)
    out = model(inputs)
    assert out.logits.shape == (3, 5)
    assert out.patch_scores.shape == (3, 16)
    assert out.patch_rationale[0].sum() == 2 and not out.patch_rationale[1].any()


def _alone_and_padded(model: CrossModalRationaleTeacher):
    """The short post of `batch` (7 tokens) alone, and beside a longer post (12 tokens)."""
    torch.manual_seed(1)
    inputs = batch(image_present=(True,), text=(True,))
    ids = torch.zeros(2, 12, dtype=torch.long)
    mask = torch.zeros(2, 12, dtype=torch.long)
    ids[0, :7], mask[0, :7] = inputs.input_ids[0], inputs.attention_mask[0]
    ids[1] = torch.tensor([101, *range(20, 30), 102])
    mask[1] = 1
    feats = torch.cat([inputs.image_features, torch.randn(1, 9, 16)])
    with torch.no_grad():
        return model(inputs), model(TeacherInputs(ids, mask, torch.tensor([True, True]), image_features=feats))


def test_a_posts_rationale_does_not_depend_on_the_longest_post_in_its_batch():
    model = tiny_teacher().eval()
    alone, padded = _alone_and_padded(model)
    assert torch.allclose(alone.token_scores[0], padded.token_scores[0, :7], atol=1e-5)
    assert torch.allclose(alone.patch_scores[0], padded.patch_scores[0], atol=1e-5)
    assert torch.allclose(alone.logits[0], padded.logits[0], atol=1e-5)
    assert float(padded.token_scores[0, 7:].abs().max()) == 0.0


def test_training_keeps_the_padded_recipe_unless_asked_to_pack():
    # the shipped checkpoint's recipe: in training the backward GRU starts at the batch's last
    # padding position, so padding reaches the tokens (the encoder without dropout, to compare passes)
    model = tiny_teacher().train()
    model.backbone.eval()
    alone, padded = _alone_and_padded(model)
    assert not torch.allclose(alone.token_scores[0], padded.token_scores[0, :7], atol=1e-5)
    model = tiny_teacher(packed_extractor_training=True).train()
    model.backbone.eval()
    alone, padded = _alone_and_padded(model)
    assert torch.allclose(alone.token_scores[0], padded.token_scores[0, :7], atol=1e-5)


def test_packed_extractor_trains_and_refuses_an_empty_row():
    model = tiny_teacher(packed_extractor_training=True).train()
    out = model(batch())
    out.token_scores.sum().backward()
    assert all(p.grad is not None for p in model.extractor.gru.parameters())
    with pytest.raises(ValueError, match="no tokens"):
        model.extractor(torch.randn(2, 4, D), torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0]]).bool())


def test_a_token_masked_inside_a_row_is_skipped_as_if_deleted():
    torch.manual_seed(2)
    extractor = tiny_teacher().extractor.eval()
    tokens = torch.randn(1, 6, D)
    hole = torch.tensor([[1, 1, 0, 1, 1, 0]]).bool()
    with torch.no_grad():
        masked = extractor(tokens, hole)
        deleted = extractor(tokens[:, [0, 1, 3, 4]], torch.ones(1, 4).bool())
    assert torch.allclose(masked[0, [0, 1, 3, 4]], deleted[0], atol=1e-6)
    assert torch.allclose(masked[0, [2, 5]], extractor.out.bias.detach().expand(2))
