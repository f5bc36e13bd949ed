"""Distilling the teacher into the student: cached teacher outputs, cached frozen features,
the loop (seeded, resumable, early stopping on CrisisMMD dev Macro-F1).

The data are the teacher's (`assembly.assemble`, same seed): CrisisMMD train, the HumAID
pool (a fresh sample each epoch), the Nepal rationales and the labelled photos -- plus
synthetic **transfer pairs** (`transfer_pairs`): only 562 training posts have both a text and a
photo here, too few to learn the teacher's text-to-patch transfer from, so training texts are
paired with training photos and the teacher's outputs on those pairs (class distribution, token
scores, IPOT-transferred patch scores) are distilled too. Pairs carry no gold label: they add
no cross-entropy, only the teacher's targets. The teacher is not run here: its outputs come from
`crisislens distill teacher-outputs`; its weights only initialise the student.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crisislens.distill import data as D
from crisislens.distill.assembly import Sets, assemble, epoch_examples
from crisislens.distill.features import (
    MINILM_ID,
    Features,
    bucketed,
    build_image_cache,
    build_text_cache,
    example_key,
    minilm_encoder,
)
from crisislens.distill.loop import (
    EpochLoop,
    WarmupLinear,
    class_weights,
    make_optimizer,
    mean_parts,
    new_state,
    resume_from,
    run_epochs,
    run_summary,
    set_seed,
)
from crisislens.distill.student import (
    DistillWeights,
    RationaleStudent,
    StudentConfig,
    TeacherTargets,
    distill_loss,
    frozen_image_blocks,
    save_student,
    student_from_teacher,
    student_image_config,
    student_image_tower,
)
from crisislens.distill.teacher import TeacherInputs
from crisislens.distill.teacher_outputs import AlignmentStore, TeacherOutputsError, TeacherOutputStore, merge_outputs
from crisislens.distill.train_teacher import TrainConfig
from crisislens.runtime.labels import LABEL_NAMES, label_index
from crisislens.evaluation.metrics import classification_report
from crisislens.runtime.preprocessing import ImageConfig

DEFAULT_OUTPUTS = "models/teacher-outputs/outputs.npz"
DEFAULT_ALIGNMENT = "artifacts/teacher-alignment.npz"


@dataclass
class StudentTrainConfig:
    data_root: str = "../shared/data"
    teacher: str = "artifacts/teacher"  # best.pt initialises the student
    outputs: str = DEFAULT_OUTPUTS
    # The teacher's transfer alignment (`crisislens distill teacher-alignment`), read when the
    # student has a transfer head and the `align` loss weight is not 0.
    alignment: str = DEFAULT_ALIGNMENT
    out: str = "artifacts/student"
    cache: str = "artifacts/cache"
    seed: int = 13
    epochs: int = 5
    patience: int = 2
    batch_size: int = 32
    lr_new: float = 3e-4  # fusion, projections, heads
    lr_text: float = 5e-5  # the fine-tuned MiniLM layer(s)
    weight_decay: float = 0.01
    max_minutes: float = 0.0
    # Synthetic text+photo transfer pairs (0: none): by default every CrisisMMD training text
    # without a photo (a larger number is capped there); research/results/patch_agreement.md
    # compares this count with fewer pairs.
    pairs: int = 5562
    loss: DistillWeights = field(default_factory=DistillWeights)
    model: StudentConfig = field(default_factory=StudentConfig)

    def teacher_config(self) -> TrainConfig:
        """The teacher's data settings (same sets, same seed)."""
        return TrainConfig(data_root=self.data_root, out=self.teacher, cache=self.cache, seed=self.seed)


# ----------------------------------------------------------------------------- transfer pairs


def transfer_pairs(sets: Sets, count: int, seed: int) -> list[D.Example]:
    """`count` synthetic text+photo pairs: a CrisisMMD training text that has no photo here, with
    a training photo drawn at random (CrisisMMD train photos and the labelled photos; never a
    dev/test or held-out one). Seeded, so the teacher-outputs run and the student see the same
    pairs. Unlabelled (`label=None`); `meta["text_key"]` points to the text's own example."""
    if count <= 0:
        return []
    texts = [e for e in sets.train["crisismmd"] if e.image is None and e.text]
    photos = sorted({e.image for rows in (sets.train["crisismmd"], sets.train["images"]) for e in rows
                     if e.image is not None})
    if not texts or not photos:
        return []
    rng = random.Random(seed * 7919 + 1)
    out = []
    for t in rng.sample(texts, min(count, len(texts))):
        photo = rng.choice(photos)
        out.append(D.Example(id=f"{t.source}:{t.id}|{photo.parent.name}/{photo.name}", text=t.text, image=photo,
                             label=None, source="pair", event=t.event, meta={"text_key": example_key(t)}))
    return out


# ----------------------------------------------------------------------------- features + targets


def student_features(sets: Sets, root: Path, config: StudentTrainConfig, student: RationaleStudent,
                     pairs: Sequence[D.Example] = ()) -> Features:
    """Image grids at the student's resolution and the student's lower-layer text states."""
    everything = ([e for rows in sets.train.values() for e in rows] + sets.dev + sets.test + sets.rationale_eval
                  + sets.image_heldout)
    seen: dict[str, D.Example] = {}
    for e in everything:
        seen.setdefault(example_key(e), e)
    cache = Path(config.cache)
    image_config = student_image_config(config.model)
    blocks = frozen_image_blocks(config.model)
    name = "images" if image_config == ImageConfig() else f"images_{image_config.size}px"
    folder = cache / (name if blocks is None else f"{name}_b{blocks}")
    photos = [e.image for e in list(seen.values()) + list(pairs) if e.image is not None]
    images = build_image_cache(root, photos, folder, student_image_tower(config.model), config=image_config)
    folder = cache / f"text_l{config.model.frozen_text_layers}"
    text = build_text_cache(list(seen.values()), folder, minilm_encoder(config.teacher_config()), student.text,
                            model_id=MINILM_ID)
    return Features(text, images, root)


def teacher_targets(store: TeacherOutputStore, examples: Sequence[D.Example], inputs: TeacherInputs,
                    alignment: AlignmentStore | None = None, states: bool = False) -> TeacherTargets:
    b, n = inputs.input_ids.shape
    m = inputs.image_features.shape[1] if inputs.image_features is not None else 49
    logits = np.zeros((b, len(LABEL_NAMES)), np.float32)
    tokens = np.zeros((b, n), np.float32)
    patches = np.zeros((b, m), np.float32)
    has_image = np.zeros(b, bool)
    lengths = inputs.attention_mask.sum(1).tolist()
    for i, e in enumerate(examples):
        r = store.row(example_key(e))
        if len(r["token_scores"]) != lengths[i]:
            raise TeacherOutputsError(f"{example_key(e)}: teacher outputs have {len(r['token_scores'])} tokens, the "
                                      f"student's tokeniser gives {lengths[i]}; rebuild the teacher outputs")
        logits[i] = r["logits"]
        tokens[i, : lengths[i]] = r["token_scores"]
        patches[i] = r["patch_scores"]
        has_image[i] = r["has_image"]
    targets = TeacherTargets(torch.from_numpy(logits), torch.from_numpy(tokens), torch.from_numpy(patches),
                             torch.from_numpy(has_image))
    if alignment is not None:
        states = states and alignment.token_states is not None
        d = alignment.token_states.shape[1] if states else 0  # type: ignore[union-attr]
        shares = np.zeros((b, m, n), np.float32)
        token_states, patch_states = np.zeros((b, n, d), np.float32), np.zeros((b, m, d), np.float32)
        has = np.zeros(b, bool)
        for i, e in enumerate(examples):
            a = alignment.get(example_key(e)) if has_image[i] else None
            if a is None:
                continue
            if len(a) != lengths[i]:
                raise TeacherOutputsError(f"{example_key(e)}: the teacher alignment has {len(a)} tokens, the "
                                          f"student's tokeniser gives {lengths[i]}; rebuild the teacher alignment")
            shares[i, :, : lengths[i]], has[i] = a.T, True
            if states:
                token_states[i, : lengths[i]], patch_states[i] = alignment.states(example_key(e))  # type: ignore[misc]
        targets.alignment, targets.has_alignment = torch.from_numpy(shares), torch.from_numpy(has)
        if states:
            targets.token_states, targets.patch_states = torch.from_numpy(token_states), torch.from_numpy(patch_states)
            targets.has_states = targets.has_alignment
    return targets


def batch_loss(model: RationaleStudent, batch: Sequence[D.Example], features: Features, store: TeacherOutputStore,
               alignment: AlignmentStore | None, weights: DistillWeights,
               class_weights: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """The student on one batch against the teacher's stored targets and the gold labels:
    `distill_loss`'s total and parts."""
    inputs, human, has_human = features.batch(batch)
    targets = teacher_targets(store, batch, inputs, alignment, states=bool(weights.hidden or weights.relation))
    labels = torch.tensor([-100 if e.label is None else label_index(e.label) for e in batch])
    out = model(inputs)
    content = model.content_mask(inputs.input_ids, inputs.attention_mask)
    patch_mask = inputs.image_present[:, None].expand_as(out.patch_scores)
    return distill_loss(out, targets, labels, content, patch_mask, weights, human, has_human, class_weights)


# ----------------------------------------------------------------------------- evaluation helpers


def student_outputs(model: RationaleStudent, batches: Any, rows: Sequence[D.Example], batch_size: int = 64) -> list[dict[str, Any]]:
    """Per example, the same fields as the teacher's (probs, tokens, patches)."""
    from crisislens.distill.eval_teacher import teacher_outputs

    return teacher_outputs(model, batches, rows, batch_size)


def dev_scores(model: RationaleStudent, features: Features, dev: Sequence[D.Example]) -> dict[str, float]:
    outs = student_outputs(model, lambda rows: features.batch(rows)[0], dev)
    pred = [LABEL_NAMES[int(o["probs"].argmax())] for o in outs]
    rep = classification_report([e.label for e in dev], pred, LABEL_NAMES)
    return {"macro_f1": rep.macro_f1, "accuracy": rep.accuracy}


# ----------------------------------------------------------------------------- loop


def train_student(config: StudentTrainConfig, resume: bool = True) -> dict[str, Any]:
    from crisislens.distill.eval_teacher import load_teacher

    started = time.perf_counter()
    root = D.resolve_data_root(config.data_root)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    set_seed(config.seed)
    teacher_ckpt = Path(config.teacher) / "best.pt"
    if not teacher_ckpt.is_file():
        raise FileNotFoundError(f"{teacher_ckpt}: the student is initialised from the teacher; train it first")
    store = TeacherOutputStore.load(Path(config.outputs))
    alignment = None
    needs_states = bool(config.loss.hidden or config.loss.relation)
    if (config.model.transfer_dim and config.loss.align) or needs_states:
        alignment = AlignmentStore.load(Path(config.alignment))
        if alignment.meta.get("teacher_checkpoint_sha256") != store.meta.get("teacher_checkpoint_sha256"):
            raise TeacherOutputsError(f"{config.alignment} and {config.outputs} come from different teacher "
                                      "checkpoints; rebuild with `crisislens distill teacher-alignment`")
        if needs_states and not alignment.has_states:
            raise TeacherOutputsError(f"{config.alignment} holds no teacher states for the hidden-state and relation "
                                      "terms (loss weight hidden or relation > 0); rebuild with `crisislens distill "
                                      "teacher-alignment --states`")
    print("assembling data ...", file=sys.stderr)
    tconfig = config.teacher_config()
    sets = assemble(root, tconfig)
    model = student_from_teacher(load_teacher(teacher_ckpt), config.model)
    pairs = transfer_pairs(sets, config.pairs, config.seed)
    features = student_features(sets, root, config, model, pairs)
    missing = [example_key(e) for rows in [*sets.train.values(), pairs] for e in rows if example_key(e) not in store]
    if missing:
        raise TeacherOutputsError(f"{config.outputs}: no teacher outputs for {len(missing)} training examples "
                                  f"(first {missing[:3]}); rebuild with `crisislens distill teacher-outputs`")

    optimizer = make_optimizer(model, model.text, config)
    weights = class_weights([e.label for rows in sets.train.values() for e in rows])  # type: ignore[misc]
    last = out / "last.pt"
    state = (resume_from(last, model, optimizer) if resume else None) or new_state()
    steps_per_epoch = (len(epoch_examples(sets, tconfig, 0)) + len(pairs) + config.batch_size - 1) // config.batch_size
    loop = EpochLoop(
        model=model, optimizer=optimizer, schedule=WarmupLinear(optimizer, steps_per_epoch, config.epochs), last=last,
        batches=lambda epoch: bucketed(epoch_examples(sets, tconfig, epoch) + pairs, features, config.batch_size,
                                        random.Random(config.seed + epoch)),
        step_loss=lambda batch: batch_loss(model, batch, features, store, alignment, config.loss, weights),
        dev=lambda: dev_scores(model, features, sets.dev),
        save_best=lambda epoch, scores: save_student(model, out / "best.pt",
                                                     {"epoch": epoch, "dev": scores, "loss": asdict(config.loss)}),
        progress=lambda sums: mean_parts(sums, ("kd", "ce", "token_teacher", "patch_teacher", "align", "hidden",
                                                "relation")),
        progress_every=20)
    stopped_early = run_epochs(loop, state, epochs=config.epochs, patience=config.patience,
                               batch_size=config.batch_size, started=started, max_minutes=config.max_minutes)
    summary = run_summary(config, state, stopped_early, started) | {
        "teacher_outputs": {"path": config.outputs, "rows": len(store), "meta": store.meta},
        "data": {name: len(rows) for name, rows in sets.train.items()} | {"pairs": len(pairs), "dev": len(sets.dev)},
    }
    (out / "train_summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


@dataclass
class TeacherRun:
    """What a pass of the teacher over the distillation examples needs (`teacher_run`)."""

    sets: Sets
    checkpoint: Path
    model: Any
    batches: Any  # examples -> TeacherInputs from the teacher's feature caches
    pairs: list[D.Example]
    rows: dict[str, D.Example]  # example key -> example: every set, the pairs included, once each
    max_length: int


def teacher_run(config: StudentTrainConfig) -> TeacherRun:
    """Load the teacher and its features, and list every example distillation and its report
    use (the transfer pairs included, each key once)."""
    from crisislens.distill.eval_teacher import cached_batches, load_teacher
    from crisislens.distill.features import build_features

    root = D.resolve_data_root(config.data_root)
    tconfig = config.teacher_config()
    set_seed(config.seed)
    sets = assemble(root, tconfig)
    ckpt = Path(config.teacher) / "best.pt"
    model = load_teacher(ckpt)
    encoder = minilm_encoder(tconfig)
    features = build_features(sets, root, tconfig, model, encoder)
    pairs = transfer_pairs(sets, config.pairs, config.seed)
    rows: dict[str, D.Example] = {}
    for e in ([e for r in sets.train.values() for e in r] + sets.dev + sets.test + sets.rationale_eval
              + sets.image_heldout + pairs):
        rows.setdefault(example_key(e), e)
    return TeacherRun(sets, ckpt, model, cached_batches(features), pairs, rows, encoder.config.max_length)


def export_teacher_outputs(config: StudentTrainConfig, reuse: bool = False) -> tuple[Path, TeacherOutputStore]:
    """Run the teacher once over every example distillation and its report use (and the transfer
    pairs). `reuse`: keep the rows of an existing file made by the same teacher checkpoint and
    compute only the examples it lacks."""
    from crisislens.distill.teacher_outputs import compute, file_sha256

    run = teacher_run(config)
    sets, rows = run.sets, run.rows
    keys = list(rows)
    meta = {"teacher_checkpoint_sha256": file_sha256(run.checkpoint), "tokenizer": MINILM_ID,
            "max_length": run.max_length, "seed": config.seed,
            "sources": {name: len(r) for name, r in sets.train.items()}
            | {"pairs": len(run.pairs), "dev": len(sets.dev), "test": len(sets.test),
               "rationale_eval": len(sets.rationale_eval), "image_heldout": len(sets.image_heldout)}}
    path = Path(config.outputs)
    old = _reusable_outputs(path, meta) if reuse else None
    todo = [k for k in keys if old is None or k not in old]
    print(f"teacher outputs: {len(keys) - len(todo)} reused from {path}, {len(todo)} to compute", file=sys.stderr)
    fresh = compute(run.model, run.batches, [rows[k] for k in todo], todo, meta) if todo else None
    if old is None and fresh is not None:
        store = fresh  # nothing reused: keep the computed rows as they are
    else:
        store = merge_outputs(keys, [s for s in (old, fresh) if s is not None], meta)
    store.save(path)
    return path, store


def export_teacher_alignment(config: StudentTrainConfig, states: bool = False) -> tuple[Path, AlignmentStore]:
    """The teacher's transfer alignment (`AlignmentStore`) for every example with a photo and
    words that distillation and its report use, transfer pairs included; with `states`, also
    the teacher's final token and patch states (the `hidden` term's targets)."""
    from crisislens.distill.teacher_outputs import compute_alignment, file_sha256

    run = teacher_run(config)
    rows = {k: e for k, e in run.rows.items() if e.image is not None and e.text}
    keys = sorted(rows, key=lambda k: len(rows[k].text or ""))  # similar lengths batch together
    meta = {"teacher_checkpoint_sha256": file_sha256(run.checkpoint), "tokenizer": MINILM_ID, "seed": config.seed,
            "pairs": len(run.pairs)}
    store = compute_alignment(run.model, run.batches, [rows[k] for k in keys], keys, meta, states=states)
    path = Path(config.alignment)
    store.save(path)
    return path, store


def _reusable_outputs(path: Path, meta: dict[str, Any]) -> TeacherOutputStore | None:
    """The stored outputs at `path` when the same teacher, tokeniser and seed made them."""
    if not path.is_file():
        return None
    try:
        old = TeacherOutputStore.load(path)
    except TeacherOutputsError:
        return None
    same = ("teacher_checkpoint_sha256", "tokenizer", "max_length", "seed")
    return old if all(old.meta.get(k) == meta[k] for k in same) else None
