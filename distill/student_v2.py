"""Student v2: the small student distilled from the teacher v2's outputs, trainable on two CPU cores.

The student is `student.RationaleStudent` at full depth: all six all-MiniLM-L6-v2 layers (the
lower `frozen_text_layers` frozen and cached, the top one fine-tuned), a frozen EfficientNet-Lite0
tower (cached), one fusion layer, the token head, the one-step transfer to the patches and the
photo head for posts without words (`StudentConfig.photo_head`). It starts from the pretrained
encoders (`student_from_pretrained`): the teacher v2 is an MPNet with nothing to copy.

What it learns from, per training row (`gather` groups; CrisisMMD dev selects the epoch, and
CrisisMMD test, the Hagupit rationales, CrisisLexT26 and every kerala_flood_2018 photo stay out):

- the gold label (cross-entropy): CrisisMMD train, a fresh HumAID sample each epoch, the Nepal
  rationale set, the labelled photos (photo only) and CrisisMMD training photos shown without
  their text (`text_drop`), labelled with their CrisisMMD image label;
- the teacher v2's class distribution (`kd`, temperature-softened KL) where the teacher saw the row;
- the teacher v2's word rationale (`token_teacher`), its MPNet word pieces mapped onto MiniLM's
  by character overlap (`map_token_scores`), and the human rationales where they exist;
- the teacher v2's IPOT-transferred patch scores on posts with words and a photo
  (`patch_teacher`, and `patch_rank` for their order).

`crisislens distill student-v2 train` writes `best.pt` (loadable by `student.load_student`, so
the export, the bundle and the runtime take it as they take any student) and `train_summary.json`.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from crisislens.distill import data as D
from crisislens.distill import teacher_run as R
from crisislens.distill.features import (
    MINILM_ID,
    Features,
    build_image_cache,
    build_text_cache,
    example_key,
    image_key,
    minilm_encoder,
    text_key,
)
from crisislens.distill.loop import (
    EpochLoop,
    WarmupLinear,
    class_weights,
    length_batches,
    make_optimizer,
    mean_parts,
    new_state,
    resume_from,
    run_epochs,
    run_summary,
    set_seed,
)
from crisislens.distill.student import (
    RationaleStudent,
    StudentConfig,
    save_student,
    student_from_pretrained,
    student_image_config,
    student_image_tower,
)
from crisislens.distill.teacher import TeacherInputs
from crisislens.distill.teacher_v2_data import _photo_key
from crisislens.evaluation.metrics import classification_report
from crisislens.runtime.labels import LABEL_NAMES, label_index
from crisislens.runtime.preprocessing import TextEncoder, clean_text

EMPTY_KEY = "empty:0"  # the cached states of a post without words ([CLS] [SEP])
# The training sources with a class offset of their own (StudentConfig.source_offsets); CrisisMMD
# rows, their photo-only views included, are the reference.
OFFSET_SOURCES = ("humaid", "rationales", "images")


def v2_student_config() -> StudentConfig:
    """The student v2's shape: full-depth MiniLM, the whole Lite0 tower at 224 px, photo head."""
    return StudentConfig(text_layers=6, frozen_text_layers=5, image_size=224, image_blocks=None, image_channels=1280,
                         photo_head=True)


@dataclass
class LossWeights:
    temperature: float = 2.0
    ce: float = 1.0
    kd: float = 0.5
    token_teacher: float = 0.5
    token_human: float = 0.5
    human_pos_weight: float = 3.0
    patch_teacher: float = 1.0
    patch_rank: float = 0.5
    patch_rank_temperature: float = 0.02
    # Deletion: the named patches must be the ones the answer depends on. Up to `deletion_rows`
    # posts with a photo per batch are also run with their top-k patches, and with k random
    # patches, greyed out in the pixels (through the frozen tower: `PixelDeletion`); the hinge
    # asks the predicted class's probability to fall by at least `deletion_ratio` x the random
    # deletion's change + `deletion_margin`. 0: off (one forward per batch, cached features only).
    deletion: float = 0.0
    deletion_ratio: float = 3.0
    deletion_margin: float = 0.05
    deletion_rows: int = 8
    # Photos read alone (no words: the CrisisMMD training photos shown without their text, the
    # labelled image collections) also learn patch targets, through `patch_teacher` and
    # `patch_rank`: the teacher run's `outputs-photo-patches.npz` (the probe teacher's
    # `--patch-targets`: the photo probe's evidence for the photo's own label, cell by cell).
    photo_alone: bool = False


@dataclass
class StudentV2Config:
    data_root: str = "../shared/data"
    teacher_run: str = "artifacts/teacher-v2-run1"  # outputs-*.npz and keys.json of the teacher v2 ("": none)
    out: str = "artifacts/student-v2"
    cache: str = "artifacts/cache-v2"
    seed: int = 13  # initialisation, batch order, the HumAID draw of each epoch
    data_seed: int = 13  # the data split (HumAID pool, held-out photos): the same for every seed
    epochs: int = 6
    patience: int = 2
    batch_size: int = 32
    lr_new: float = 3e-4
    lr_text: float = 3e-5
    weight_decay: float = 0.01
    humaid_per_epoch: int = 8000
    # Comma-separated class names: HumAID rows are drawn only from these classes ("": every
    # class). HumAID's class mix and wording differ from CrisisMMD's; drawn whole it costs
    # CrisisMMD accuracy, while its many posts about injured, dead and missing people are
    # the extra examples CrisisMMD's rarest class lacks.
    humaid_labels: str = ""
    # False: HumAID rows train without their own labels, only through the teacher's class
    # distribution (`kd`), i.e. CrisisMMD's reading of them (e.g. the probe teacher's); the
    # HumAID rows the teacher did not read are left out.
    humaid_gold: bool = True
    # A teacher-outputs file of the first teacher (`crisislens distill teacher-outputs`, e.g.
    # models/teacher-outputs/outputs.npz): its word scores, already on MiniLM's pieces, become the
    # `token_teacher` targets of the rows the teacher run gives none (the probe teacher gives none).
    token_outputs: str = ""
    text_drop: float = 1.0  # share of the CrisisMMD training photos also shown alone, with their image label
    class_weight_power: float = 0.0  # 0: no class weights; 1: inverse square-root frequency
    # Linear probing, then fine-tuning: the fine-tuned MiniLM layer stays frozen for the first
    # epochs, so the new fusion layer and heads are fitted before their gradients reach it.
    text_frozen_epochs: int = 0
    max_minutes: float = 0.0
    loss: LossWeights = field(default_factory=LossWeights)
    model: StudentConfig = field(default_factory=v2_student_config)


def apply_settings(config: StudentV2Config, settings: Sequence[str]) -> StudentV2Config:
    """`FIELD=VALUE` settings on the config, its loss weights (`loss.kd=0`) or its model
    (`model.frozen_text_layers=6`); the value is parsed as the field's type. A clear error
    names an unknown field or a value that does not parse."""
    import dataclasses

    for item in settings:
        name, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"--set {item!r}: give FIELD=VALUE")
        target: Any = config
        *path, leaf = name.split(".")
        for part in path:
            if part not in ("loss", "model"):
                raise ValueError(f"--set {item!r}: {part!r} is not loss or model")
            target = getattr(target, part)
        fields = {f.name: f for f in dataclasses.fields(target)}
        if leaf not in fields:
            raise ValueError(f"--set {item!r}: no field {leaf!r} (one of: {', '.join(sorted(fields))})")
        current = getattr(target, leaf)
        try:
            if isinstance(current, bool):
                value: Any = {"true": True, "1": True, "false": False, "0": False}[raw.lower()]
            elif current is None:
                value = None if raw.lower() == "none" else (int(raw) if raw.lstrip("-").isdigit() else raw)
            else:
                value = type(current)(raw)
        except (KeyError, ValueError) as exc:
            raise ValueError(f"--set {item!r}: {raw!r} is not a {type(current).__name__}") from exc
        setattr(target, leaf, value)
    return config


# ----------------------------------------------------------------------------- data


@dataclass
class Rows:
    """The student v2's rows by group (`teacher_v2_data.gather`) and the extra photo-only rows."""

    groups: dict[str, list[D.Example]]
    photo_only: list[D.Example]  # CrisisMMD training photos without their text, image-labelled

    def train_epoch(self, config: StudentV2Config, epoch: int) -> list[D.Example]:
        rng = random.Random(config.seed * 1000 + epoch)
        humaid = self.groups["humaid:train"]
        if config.humaid_labels:
            keep = {name.strip() for name in config.humaid_labels.split(",")}
            unknown = sorted(keep - set(LABEL_NAMES))
            if unknown:
                raise ValueError(f"humaid_labels: unknown class {', '.join(unknown)} (one of: {', '.join(LABEL_NAMES)})")
            humaid = [e for e in humaid if e.label in keep]
        drawn = rng.sample(humaid, min(config.humaid_per_epoch, len(humaid)))
        if not config.humaid_gold:
            drawn = [replace(e, label=None) for e in drawn]
        rows = self.groups["crisismmd:train"] + self.groups["rationales:train"] + self.groups["images:train"] + drawn
        rows += rng.sample(self.photo_only, round(len(self.photo_only) * min(config.text_drop, 1.0)))
        rng.shuffle(rows)
        return rows

    def read_by(self, teacher: TeacherV2) -> Rows:
        """The same rows with only the HumAID posts `teacher` read: without their own labels
        (`humaid_gold=false`) the others would carry no target."""
        humaid = [e for e in self.groups["humaid:train"] if example_key(e) in teacher.index]
        print(f"HumAID: {len(humaid)} of {len(self.groups['humaid:train'])} posts read by the teacher", file=sys.stderr)
        return Rows({**self.groups, "humaid:train": humaid}, self.photo_only)


def gather_rows(root: Path, seed: int) -> Rows:
    from crisislens.distill.teacher_v2_data import gather

    groups = gather(root, seed=seed)
    groups.pop("humaid:rest", None)
    groups.pop("crisislex:all", None)  # scored through the runtime, not cached here
    photo_only = []
    for e in groups["crisismmd:train"]:
        raw = e.meta.get("label_image")
        if e.image is not None and raw:
            photo_only.append(D.Example(id=f"{e.id}#photo", text=None, image=e.image, label=D.to_humanitarian5(raw),
                                        source="crisismmd", event=e.event, meta={"text_key": EMPTY_KEY}))
    return Rows(groups, photo_only)


def photo_only_view(rows: Sequence[D.Example]) -> list[D.Example]:
    """The same rows with their words removed (photo only; same label)."""
    return [D.Example(id=f"{e.id}#photo", text=None, image=e.image, label=e.label, source=e.source, event=e.event,
                      meta={**e.meta, "text_key": EMPTY_KEY}) for e in rows]


def text_only_view(rows: Sequence[D.Example]) -> list[D.Example]:
    return [D.Example(id=e.id, text=e.text, image=None, label=e.label, source=e.source, event=e.event, meta=e.meta)
            for e in rows]


def build_v2_features(rows: Rows, root: Path, config: StudentV2Config, model: RationaleStudent) -> Features:
    cache = Path(config.cache)
    seen: dict[str, D.Example] = {EMPTY_KEY: D.Example(id="0", text=None, image=None, label=None, source="empty")}
    for group in rows.groups.values():
        for e in group:
            seen.setdefault(example_key(e), e)
    image_config = student_image_config(config.model)
    photos = [e.image for e in seen.values() if e.image is not None]
    images = build_image_cache(root, photos, cache / f"images_{image_config.size}px_{config.model.image_blocks}",
                               student_image_tower(config.model), config=image_config)
    text = build_text_cache(list(seen.values()), cache / f"text_l{config.model.frozen_text_layers}", minilm_encoder(),
                            model.text, model_id=MINILM_ID)
    return Features(text, images, root)


# ----------------------------------------------------------------------------- teacher v2 targets


def map_token_scores(scores: np.ndarray, teacher_offsets: Sequence[tuple[int, int]],
                     student_offsets: Sequence[tuple[int, int]]) -> np.ndarray:
    """Per student word piece, the highest score of the teacher pieces whose characters it
    overlaps (0 for special tokens: empty spans)."""
    out = np.zeros(len(student_offsets), np.float32)
    spans = [(a, b, float(s)) for (a, b), s in zip(teacher_offsets, scores) if b > a]
    for i, (a, b) in enumerate(student_offsets):
        if b <= a:
            continue
        best = [s for ta, tb, s in spans if ta < b and a < tb]
        out[i] = max(best) if best else 0.0
    return out


@dataclass
class TeacherV2:
    """The teacher v2's outputs, per example key: logits, word scores on MiniLM pieces, patches."""

    index: dict[str, int]
    logits: np.ndarray  # [R, C]
    tokens: dict[str, np.ndarray]  # key -> [student pieces] mapped scores
    patches: dict[str, np.ndarray]  # key -> [49] transferred scores (posts with words and a photo)
    # photo key (path under images/) -> [49] targets for the photo read alone (may be empty)
    photo_patches: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def empty(cls) -> TeacherV2:
        """No teacher outputs: training on the gold labels and the human rationales only."""
        return cls({}, np.zeros((0, len(LABEL_NAMES)), np.float32), {}, {})

    @classmethod
    def load(cls, run: Path, rows: Sequence[D.Example], encoder: TextEncoder, cache: Path) -> TeacherV2:
        keys = json.loads((run / R.KEYS).read_text())
        index = {k: i for i, k in enumerate(keys)}
        logits = np.load(run / R.LOGITS)
        z = np.load(run / R.PATCHES)
        patches = {keys[int(r)]: z["patches"][j].astype(np.float32) for j, r in enumerate(z["photo_rows"])}
        # The mapped word scores are cached per teacher run (a run without word scores, such as
        # the probe teacher's, has none to map).
        mapped = cache / f"teacher-v2-tokens-{run.resolve().name}.npz"
        if not (run / R.TOKENS).is_file():
            tokens: dict[str, np.ndarray] = {}
        elif mapped.is_file():
            with np.load(mapped) as m:  # each m[name] reads the array again: once each
                keys_m, flat, starts, lengths = m["keys"].tolist(), m["scores"], m["starts"], m["lengths"]
            tokens = {k: flat[s : s + n] for k, s, n in zip(keys_m, starts, lengths)}
        else:
            tokens = map_teacher_tokens(run, index, rows, encoder)
            order = list(tokens)
            lengths = np.array([len(tokens[k]) for k in order], np.int64)
            np.savez(mapped, keys=np.array(order), scores=np.concatenate([tokens[k] for k in order]) if order else
                     np.zeros(0, np.float32), starts=np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64),
                     lengths=lengths)
        alone: dict[str, np.ndarray] = {}
        if (run / R.PHOTO_PATCHES).is_file():
            with np.load(run / R.PHOTO_PATCHES) as a:
                alone = dict(zip(a["keys"].tolist(), a["patches"].astype(np.float32)))
        return cls(index, logits["logits"], tokens, patches, alone)

    def add_token_outputs(self, path: Path, rows: Sequence[D.Example]) -> int:
        """Word scores from a teacher-outputs file (MiniLM pieces, as the student's) for the rows
        that have none yet; returns how many were added. A row whose text is tokenised otherwise
        now is skipped at training time (its length differs)."""
        from crisislens.distill.teacher_outputs import TeacherOutputStore

        store = TeacherOutputStore.load(path)
        added = 0
        for e in rows:
            key = example_key(e)
            if e.text and key not in self.tokens and key in store:
                self.tokens[key] = store.row(key)["token_scores"]
                added += 1
        return added


def map_teacher_tokens(run: Path, index: dict[str, int], rows: Sequence[D.Example],
                       encoder: TextEncoder) -> dict[str, np.ndarray]:
    """The teacher v2's word scores (MPNet pieces, cleaned text, 64 pieces) on the student's pieces."""
    from crisislens.distill.pretrained import mpnet_dir
    from crisislens.distill.teacher_v2_data import mpnet_tokenizer

    scores = np.load(run / R.TOKENS)["tokens"]
    tok = mpnet_tokenizer(mpnet_dir())
    todo = [e for e in rows if e.text and example_key(e) in index]
    cleaned = [clean_text(e.text)[0] for e in todo]
    teacher = tok.encode_batch(cleaned)  # type: ignore[attr-defined]
    out: dict[str, np.ndarray] = {}
    for lo in range(0, len(todo), 256):
        batch = encoder.encode_batch([e.text or "" for e in todo[lo : lo + 256]])
        for j, e in enumerate(todo[lo : lo + 256]):
            n = int(batch.attention_mask[j].sum())
            t = teacher[lo + j]
            out[example_key(e)] = map_token_scores(scores[index[example_key(e)], : len(t.ids)], t.offsets,
                                                   batch.offsets[j][:n])
    return out


def prior_offsets(rows: Rows) -> torch.Tensor:
    """[len(OFFSET_SOURCES), C]: where the source offsets start: the log ratio of each source's
    class frequencies to CrisisMMD training's (add-one smoothed), which a CrisisMMD-calibrated
    model needs to fit that source's class mix."""

    def log_prior(examples: Sequence[D.Example]) -> torch.Tensor:
        counts = torch.ones(len(LABEL_NAMES))
        for e in examples:
            if e.label:
                counts[label_index(e.label)] += 1
        return (counts / counts.sum()).log()

    every = [e for name, group in rows.groups.items() if name.endswith(":train") for e in group]
    reference = log_prior([e for e in every if e.source == "crisismmd"])
    offsets = torch.zeros(len(OFFSET_SOURCES), len(LABEL_NAMES))
    for i, source in enumerate(OFFSET_SOURCES):
        mine = [e for e in every if e.source == source]
        if mine:
            offsets[i] = log_prior(mine) - reference
    return offsets


# ----------------------------------------------------------------------------- loss


def _bce(scores: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor | None:
    if not bool(mask.any()):
        return None
    w = None if weight is None else weight[mask]
    return F.binary_cross_entropy(scores.clamp(1e-6, 1 - 1e-6)[mask], target[mask], weight=w)


class PixelDeletion:
    """Photos with patch-grid cells greyed out, through the student's frozen image tower: the
    features `evaluation.photos.deletion` measures the runtime on, made during training.
    (Replacing the cached features of the deleted cells by a grey photo's is no stand-in: the
    tower spreads each cell over the whole 7 x 7 grid; research/results/patch_token_deletion.md.)"""

    def __init__(self, config: StudentConfig, keep: int = 4096):  # float16 224 px photos: 300 KB each
        self.image_config = student_image_config(config)
        self.grid = config.patch_grid
        self.tower = student_image_tower(config).eval()
        self.keep = keep
        self._pixels: dict[str, np.ndarray] = {}

    def pixels(self, image: Path) -> np.ndarray:
        from crisislens.runtime.preprocessing import load_image

        key = str(image)
        if key not in self._pixels:
            if len(self._pixels) >= self.keep:
                self._pixels.pop(next(iter(self._pixels)))
            self._pixels[key] = load_image(image, self.image_config)[0].astype(np.float16)
        return self._pixels[key]

    @torch.no_grad()
    def __call__(self, images: Sequence[Path], cells: torch.Tensor) -> torch.Tensor:
        """[B, M, C]: photo `images[i]` with the cells `cells[i]` ([B, M] bool) greyed out."""
        from crisislens.evaluation.photos import grey_out

        arrays = [grey_out(self.pixels(image).astype(np.float32), row.nonzero().squeeze(1).tolist(), self.grid)
                  for image, row in zip(images, cells)]
        return self.tower(torch.from_numpy(np.stack(arrays)).float())


def random_cells(top: torch.Tensor, generator: torch.Generator | None = None,
                 valid: torch.Tensor | None = None) -> torch.Tensor:
    """[B, M] bool: per row, as many random cells as `top` [B, M] marks, never one `valid` rules out."""
    noise = torch.rand(top.shape, generator=generator)
    if valid is not None:
        noise = noise.masked_fill(~valid, 2.0)
    return noise.argsort(1).argsort(1) < top.sum(1, keepdim=True)


def deletion_loss(model: RationaleStudent, inputs: TeacherInputs, out: Any,
                  delete: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], ratio: float, margin: float,
                  rows: int = 0, generator: torch.Generator | None = None) -> torch.Tensor | None:
    """Hinge on deletion faithfulness over the posts with a photo (at most `rows` of them, drawn;
    0: all): the predicted class's probability must fall by at least `ratio` x |its change when k
    random patches are deleted| + `margin` when the top-k patches (`out.patch_rationale`) are.
    `delete(idx, cells)` gives the features of photos `idx` [B] with `cells` [B, M] deleted."""
    has = inputs.image_present.bool() & out.patch_rationale.any(1)
    if not bool(has.any()):
        return None
    idx = has.nonzero().squeeze(1)
    if rows and len(idx) > rows:
        idx = idx[torch.randperm(len(idx), generator=generator)[:rows]].sort().values
    top = out.patch_rationale[idx]
    b = len(top)
    rand = random_cells(top, generator, None if inputs.patch_mask is None else inputs.patch_mask[idx].bool())

    def twice(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else torch.cat([t[idx]] * 2)

    sub = TeacherInputs(input_ids=twice(inputs.input_ids), attention_mask=twice(inputs.attention_mask),
                        image_present=twice(inputs.image_present), text_states=twice(inputs.text_states),
                        image_features=delete(torch.cat([idx, idx]), torch.cat([top, rand])),
                        patch_mask=twice(inputs.patch_mask))
    probs = model(sub).logits.softmax(-1)
    base = out.logits[idx].detach().softmax(-1)
    pred = base.argmax(1, keepdim=True)
    p0 = base.gather(1, pred).squeeze(1)
    p_top, p_rand = probs[:b].gather(1, pred).squeeze(1), probs[b:].gather(1, pred).squeeze(1)
    return F.relu(ratio * (p0 - p_rand).abs() + margin - (p0 - p_top)).mean()


def batch_loss(model: RationaleStudent, batch: Sequence[D.Example], features: Features, teacher: TeacherV2,
               weights: LossWeights, cw: torch.Tensor | None,
               deleter: PixelDeletion | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    inputs, human, has_human = features.batch(batch)
    out = model(inputs)
    b, n = inputs.input_ids.shape
    content = model.content_mask(inputs.input_ids, inputs.attention_mask)
    labels = torch.tensor([-100 if e.label is None else label_index(e.label) for e in batch])
    t_logits = torch.zeros(b, len(LABEL_NAMES))
    has_logits = torch.zeros(b, dtype=torch.bool)
    t_tokens = torch.zeros(b, n)
    has_tokens = torch.zeros(b, dtype=torch.bool)
    t_patches = torch.zeros(b, out.patch_scores.shape[1])
    has_patches = torch.zeros(b, dtype=torch.bool)
    alone_rows = torch.zeros(b, dtype=torch.bool)
    if weights.photo_alone and not teacher.photo_patches:
        raise ValueError(f"loss.photo_alone: the teacher run has no {R.PHOTO_PATCHES} "
                         "(crisislens distill teacher-v2 probe-teacher --patch-targets)")
    for i, e in enumerate(batch):
        key = example_key(e)
        if weights.photo_alone and not e.text and e.image is not None and bool(inputs.image_present[i]):
            alone = teacher.photo_patches.get(_photo_key(e, features.root) or "")
            if alone is not None:
                t_patches[i], has_patches[i], alone_rows[i] = torch.from_numpy(alone), True, True
            continue
        if text_key(e) != key:
            continue  # a view without its words: the teacher did not see it so
        if key in teacher.index:
            t_logits[i], has_logits[i] = torch.from_numpy(teacher.logits[teacher.index[key]]), True
        tokens = teacher.tokens.get(key)
        if tokens is not None and len(tokens) == int(inputs.attention_mask[i].sum()):
            t_tokens[i, : len(tokens)], has_tokens[i] = torch.from_numpy(tokens), True
        patches = teacher.patches.get(key)
        if patches is not None and bool(inputs.image_present[i]):
            t_patches[i], has_patches[i] = torch.from_numpy(patches), True

    parts: dict[str, float] = {}
    total = out.logits.new_zeros(())

    def add(name: str, weight: float, value: torch.Tensor | None) -> None:
        nonlocal total
        parts[name] = 0.0 if value is None else float(value.detach())
        if value is not None and weight:
            total = total + weight * value

    gold = labels >= 0
    logits = out.logits
    if model.source_offset is not None:  # each source's own class mix (CrisisMMD: none)
        which = torch.tensor([OFFSET_SOURCES.index(e.source) if e.source in OFFSET_SOURCES else -1 for e in batch])
        has = which >= 0
        if bool(has.any()):
            shift = torch.zeros_like(logits)
            shift[has] = model.source_offset[which[has]]
            logits = logits + shift
    add("ce", weights.ce, F.cross_entropy(logits[gold], labels[gold], weight=cw) if bool(gold.any()) else None)
    t = weights.temperature
    kd = None
    if bool(has_logits.any()):
        kd = F.kl_div(F.log_softmax(out.logits[has_logits] / t, -1), F.softmax(t_logits[has_logits] / t, -1),
                      reduction="batchmean") * t * t
    add("kd", weights.kd, kd)
    add("token_teacher", weights.token_teacher, _bce(out.token_scores, t_tokens, content & has_tokens[:, None]))
    rows = has_human.bool()[:, None] & content
    add("token_human", weights.token_human,
        _bce(out.token_scores, human, rows, torch.where(human > 0.5, weights.human_pos_weight, 1.0)))
    valid = (inputs.image_present.bool()[:, None].expand_as(out.patch_scores)
             & (has_patches & (content.any(1) | alone_rows))[:, None])
    add("patch_teacher", weights.patch_teacher, _bce(out.patch_scores, t_patches, valid))
    rows_p = valid.any(1)
    rank = None
    if bool(rows_p.any()):
        tt = weights.patch_rank_temperature
        neg = -1e4
        target = F.softmax((t_patches / tt).masked_fill(~valid, neg), -1)[rows_p]
        logq = F.log_softmax((out.patch_scores / tt).masked_fill(~valid, neg), -1)[rows_p]
        rank = (target * (target.clamp_min(1e-12).log() - logq)).masked_fill(~valid[rows_p], 0.0).sum(-1).mean()
    add("patch_rank", weights.patch_rank, rank)
    if weights.deletion:
        if deleter is None:
            raise ValueError("loss.deletion needs the photos' pixels (deleter=PixelDeletion(...))")
        add("deletion", weights.deletion, deletion_loss(
            model, inputs, out, lambda idx, cells: deleter([batch[int(i)].image for i in idx], cells),  # type: ignore[misc]
            weights.deletion_ratio, weights.deletion_margin, rows=weights.deletion_rows))
    return total, parts


# ----------------------------------------------------------------------------- evaluation


@torch.no_grad()
def predict(model: RationaleStudent, features: Features, rows: Sequence[D.Example], batch_size: int = 64) -> np.ndarray:
    """[N, C] class probabilities."""
    model.eval()
    out = np.zeros((len(rows), len(LABEL_NAMES)), np.float32)
    order = sorted(range(len(rows)), key=lambda i: int(features.text.lengths[features.text.index[text_key(rows[i])]]))
    for lo in range(0, len(order), batch_size):
        idx = order[lo : lo + batch_size]
        inputs, _, _ = features.batch([rows[i] for i in idx])
        out[idx] = model(inputs).logits.softmax(-1).numpy()
    return out


def scores(model: RationaleStudent, features: Features, rows: Sequence[D.Example],
           labels: Sequence[str] | None = None) -> dict[str, Any]:
    probs = predict(model, features, rows)
    pred = [LABEL_NAMES[i] for i in probs.argmax(1)]
    gold = list(labels) if labels is not None else [e.label or "" for e in rows]
    # Macro-F1 over the classes present in the gold labels (a held-out event may lack one); a
    # prediction of an absent class still counts as an error.
    present = [name for name in LABEL_NAMES if name in set(gold)]
    rep = classification_report(gold, pred, LABEL_NAMES)
    f1 = {name: rep.per_class[name].f1 for name in present}
    return {"n": len(gold), "macro_f1": float(np.mean(list(f1.values()))), "accuracy": rep.accuracy, "per_class_f1": f1}


def evaluate(model: RationaleStudent, features: Features, rows: Rows) -> dict[str, Any]:
    g = rows.groups
    result: dict[str, Any] = {}
    for split in ("crisismmd:dev", "crisismmd:test"):
        result[split] = scores(model, features, g[split])
        photo = [e for e in g[split] if e.image is not None and image_key(features.root, e.image) in features.images.index]
        result[f"{split} with a photo: text + photo"] = scores(model, features, photo)
        result[f"{split} with a photo: text only"] = scores(model, features, text_only_view(photo))
        result[f"{split} with a photo: photo only"] = scores(model, features, photo_only_view(photo))
    kerala = [e for e in g["images:kerala"] if image_key(features.root, e.image) in features.images.index]  # type: ignore[arg-type]
    result["images:kerala photo only"] = scores(model, features, kerala)
    return result


# ----------------------------------------------------------------------------- loop


def check_settings(config: StudentV2Config) -> None:
    """Settings that need a file the teacher run may lack, refused before any work starts."""
    alone = Path(config.teacher_run) / R.PHOTO_PATCHES if config.teacher_run else None
    if config.loss.photo_alone and (alone is None or not alone.is_file()):
        raise ValueError(f"loss.photo_alone: the teacher run {config.teacher_run or '(none)'} has no "
                         f"{R.PHOTO_PATCHES} (crisislens distill teacher-v2 probe-teacher --patch-targets)")
    if config.token_outputs and not Path(config.token_outputs).is_file():
        raise ValueError(f"token_outputs: {config.token_outputs}: no such teacher-outputs file "
                         "(crisislens distill teacher-outputs)")


def train(config: StudentV2Config, resume: bool = True) -> dict[str, Any]:
    started = time.perf_counter()
    root = D.resolve_data_root(config.data_root)
    check_settings(config)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    Path(config.cache).mkdir(parents=True, exist_ok=True)
    set_seed(config.seed)
    print("gathering rows ...", file=sys.stderr)
    rows = gather_rows(root, config.data_seed)
    model = student_from_pretrained(config.model)
    features = build_v2_features(rows, root, config, model)
    every = [e for group in rows.groups.values() for e in group]
    if config.teacher_run:
        teacher = TeacherV2.load(Path(config.teacher_run), every, minilm_encoder(), Path(config.cache))
    else:
        print("no teacher run: gold labels and human rationales only", file=sys.stderr)
        teacher = TeacherV2.empty()
    if config.token_outputs:
        added = teacher.add_token_outputs(Path(config.token_outputs), every)
        print(f"word scores of {added} rows from {config.token_outputs}", file=sys.stderr)
    if not config.humaid_gold and teacher.index:
        rows = rows.read_by(teacher)
    optimizer = make_optimizer(model, model.text, config)
    train_labels = [e.label for e in rows.train_epoch(config, 0) if e.label]
    cw = class_weights(train_labels) ** config.class_weight_power if config.class_weight_power else None  # type: ignore[arg-type]
    if model.source_offset is not None:
        with torch.no_grad():
            model.source_offset.copy_(prior_offsets(rows))
    last = out / "last.pt"
    state = (resume_from(last, model, optimizer) if resume else None) or new_state()
    steps = (len(rows.train_epoch(config, 0)) + config.batch_size - 1) // config.batch_size

    tuned_text = [p for p in model.text.parameters() if p.requires_grad]
    deleter = PixelDeletion(config.model) if config.loss.deletion else None

    def batches(epoch: int) -> list[list[D.Example]]:
        for p in tuned_text:  # frozen during the first text_frozen_epochs (no gradient: AdamW skips it)
            p.requires_grad_(epoch >= config.text_frozen_epochs)
            if epoch < config.text_frozen_epochs:
                p.grad = None
        epoch_rows = rows.train_epoch(config, epoch)
        out_batches: list[list[D.Example]] = []
        for with_image in (False, True):
            group = [e for e in epoch_rows if (e.image is not None) == with_image]
            out_batches += length_batches(group, lambda e: int(features.text.lengths[features.text.index[text_key(e)]]),
                                          config.batch_size)
        random.Random(config.seed + epoch).shuffle(out_batches)
        return out_batches

    def dev() -> dict[str, float]:
        s = scores(model, features, rows.groups["crisismmd:dev"])
        return {"macro_f1": s["macro_f1"], "accuracy": s["accuracy"]}

    loop = EpochLoop(
        model=model, optimizer=optimizer, schedule=WarmupLinear(optimizer, steps, config.epochs), last=last,
        batches=batches, step_loss=lambda batch: batch_loss(model, batch, features, teacher, config.loss, cw, deleter),
        dev=dev, save_best=lambda epoch, s: save_student(model, out / "best.pt", {"epoch": epoch, "dev": s,
                                                                                   "trainer": "student_v2"}),
        progress=lambda sums: mean_parts(sums, ("ce", "kd", "token_teacher", "token_human", "patch_teacher",
                                                "patch_rank", "deletion")),
        progress_every=20)
    stopped = run_epochs(loop, state, epochs=config.epochs, patience=config.patience, batch_size=config.batch_size,
                         started=started, max_minutes=config.max_minutes)
    from crisislens.distill.student import load_student

    best = load_student(out / "best.pt")
    summary = run_summary(config, state, stopped, started) | {"eval": evaluate(best, features, rows)}
    (out / "train_summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=StudentV2Config.out)
    p.add_argument("--seed", type=int, default=StudentV2Config.seed)
    p.add_argument("--epochs", type=int, default=StudentV2Config.epochs)
    p.add_argument("--kd", type=float, default=LossWeights.kd)
    p.add_argument("--class-weight-power", type=float, default=StudentV2Config.class_weight_power)
    p.add_argument("--fresh", action="store_true")
    a = p.parse_args(argv)
    config = StudentV2Config(out=a.out, seed=a.seed, epochs=a.epochs, class_weight_power=a.class_weight_power,
                             loss=LossWeights(kd=a.kd))
    summary = train(config, resume=not a.fresh)
    print(json.dumps(summary["eval"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["LossWeights", "StudentV2Config", "TeacherV2", "asdict", "map_token_scores", "train", "v2_student_config"]
