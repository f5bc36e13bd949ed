"""The student: one pass, no optimal transport, and still explains itself.

- **Text**: the first `text_layers` MiniLM layers, copied from the teacher (the lower
  `frozen_text_layers` stay frozen so their outputs can be cached for CPU training).
- **Image**: the same frozen EfficientNet-Lite0 tower, cheaper: by default cut after its
  stage 5 (`image_blocks=11`, stride 16, 112 channels) and fed 112 px photos, which gives the
  teacher's 7x7 patch layout cell for cell at a fraction of the tower's cost at 224 px
  (`image_blocks=None` runs the whole tower; at 192 px its 6x6 grid is resampled to 7x7),
  projected to the text width with 2-D position and modality embeddings (initialised from the
  teacher's where the widths match). `tuned_image_blocks=N` trains the last N blocks of the cut
  tower with the student instead (research/results/patch_agreement.md compares the two).
- **Fusion**: one transformer layer over tokens and patches (initialised from the teacher's
  first fusion layer); `fusion_layers=2` adds the teacher's second (slower:
  research/results/student_latency.md, research/results/patch_agreement.md).
- **Heads**: a per-token rationale score, a per-patch rationale score and the class. The
  default patch head is the teacher's transfer in one step (`transfer_dim`): each patch
  attends over the content tokens (cosine of projected fused states / a learned temperature)
  and its score is the attention-weighted mean of the token rationale scores -- the patches
  shown are those aligned with the rationale words, as in the teacher, without optimal
  transport (research/results/patch_ceiling.md measures the same step over the teacher's own
  states against its IPOT top-5). `transfer_dim=0` gives an MLP (or linear) head on the
  fused patch states instead.
  The class is computed *only* from rationale-weighted pooling: the text summary is the mean of
  the fused token states weighted by their rationale scores, the image summary the same over
  patches; the classifier sees nothing else. So the words and patches shown as evidence are the
  evidence used, in proportion to their shown scores.

Inputs are what the runtime can feed without torch: `input_ids`, `attention_mask`,
`pixel_values` (only the posts that have a photo) and `image_index` (see `StudentExport`).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from crisislens.distill.ipot import DEFAULT_TOP_K, top_patches
from crisislens.distill.teacher import (
    CrossModalRationaleTeacher,
    ImageTower,
    JointEncoder,
    tower_channels,
    TeacherInputs,
    TextTower,
    content_mask,
    patch_features,
    select_tokens,
)
from crisislens.runtime.labels import LABEL_NAMES
from crisislens.runtime.preprocessing import ImageConfig

# ----------------------------------------------------------------------------- configuration


@dataclass
class StudentConfig:
    hidden: int = 384
    text_layers: int = 3  # MiniLM layers kept (of 6)
    frozen_text_layers: int = 2  # cached during training; the layers above are fine-tuned
    fusion_heads: int = 6
    fusion_ffn: int = 1536
    fusion_layers: int = 1  # initialised from the teacher's first `fusion_layers` fusion layers
    image_channels: int = 112  # the cut tower's width (1280 for the whole tower)
    patch_grid: int = 7
    # The student sees photos at 112 px through EfficientNet-Lite0 cut after stage 5 (11 of its
    # 16 blocks, stride 16): a 7 x 7 grid matching the teacher's patches, and the cheapest tower
    # that keeps that grid (research/results/image_tower.md). None runs the whole tower (1280 channels).
    image_size: int = 112
    image_blocks: int | None = 11
    # The last `tuned_image_blocks` of those blocks are trained with the student (ImageNet
    # weights to start, BatchNorm statistics frozen); the frozen tower -- and the training
    # cache -- stop that many blocks earlier. 0: the whole cut tower is frozen.
    tuned_image_blocks: int = 0
    transfer_dim: int = 384  # patch head = one-step transfer over the tokens (0: MLP/linear head)
    transfer_temperature: float = 0.05  # initial softmax temperature of the transfer (learned)
    patch_head_hidden: int = 192  # MLP patch head width when transfer_dim=0 (0: linear)
    # A post with a photo and no words has nothing to transfer from: with `photo_head`, its
    # patches are scored by their own attention head (trained on the photos' labels), so the
    # photo carries the decision and shows where it looked. Posts with words keep the transfer.
    photo_head: bool = False
    # Training sources whose class mix differs from CrisisMMD's (HumAID, the rationale set, the
    # labelled photos) each get a learned offset on the logits in the training loss only, so the
    # model's own prior stays CrisisMMD's; the offsets are not part of the forward pass (nor of
    # the exported graph). 0: none.
    source_offsets: int = 0
    # What the class reads of the photo: False, the rationale-weighted fused patch states (each has
    # attended to every patch and word, so any subset carries the whole photo); True, the
    # rationale-weighted patch features as they enter the fusion (each patch's own content), so
    # the answer depends on the patches the rationale names.
    local_patch_pool: bool = False
    dropout: float = 0.1
    num_labels: int = len(LABEL_NAMES)
    cls_id: int = 101
    sep_id: int = 102
    pad_id: int = 0
    rationale_threshold: float = 0.5  # same selection rule as the teacher
    min_rationale_tokens: int = 2
    top_k_patches: int = DEFAULT_TOP_K
    pool_eps: float = 1e-4

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudentConfig:
        # Checkpoints saved before these fields existed were trained at 224 px with a linear patch
        # head, or (before the cut tower) on the whole tower with an MLP head.
        old = {"image_size": 224, "patch_head_hidden": 0, "image_channels": 1280, "image_blocks": None,
               "transfer_dim": 0}
        return cls(**{**old, **data})


def student_image_config(config: StudentConfig) -> ImageConfig:
    """How the student's photos are preprocessed: its resolution, the shared 7x7 patch layout.
    Training caches, the export, the bundle and the latency runs all take it from here."""
    return ImageConfig(size=config.image_size, patch_grid=config.patch_grid)


def frozen_image_blocks(config: StudentConfig) -> int | None:
    """Blocks of the frozen tower: `image_blocks` less the ones the student fine-tunes."""
    if not config.tuned_image_blocks:
        return config.image_blocks
    if config.image_blocks is None or not 0 < config.tuned_image_blocks < config.image_blocks:
        raise ValueError(f"tuned_image_blocks={config.tuned_image_blocks} needs a cut tower with more blocks "
                         f"(image_blocks={config.image_blocks})")
    return config.image_blocks - config.tuned_image_blocks


def student_image_tower(config: StudentConfig, net: nn.Module | None = None) -> ImageTower:
    """The student's frozen image tower (whole, or cut after `image_blocks` blocks, less the
    `tuned_image_blocks` the student runs itself)."""
    if tower_channels(config.image_blocks) != config.image_channels:
        raise ValueError(f"image_blocks={config.image_blocks} gives {tower_channels(config.image_blocks)} channels, "
                         f"the student config says image_channels={config.image_channels}")
    return ImageTower(net, grid=config.patch_grid, blocks=frozen_image_blocks(config))


def tuned_image_top(config: StudentConfig, net: nn.Module | None = None) -> nn.Sequential | None:
    """Copies of the tower blocks the student fine-tunes (from `net`, else an untrained
    EfficientNet-Lite0 for loading a checkpoint), or None."""
    first = frozen_image_blocks(config)
    if not config.tuned_image_blocks:
        return None
    if net is None:
        from efficientnet_lite_pytorch import EfficientNet

        net = EfficientNet.from_name("efficientnet-lite0")
    return nn.Sequential(*(copy.deepcopy(b) for b in net._blocks[first : config.image_blocks])).requires_grad_(True)


@dataclass
class DistillWeights:
    """Weights of the distillation loss terms (one place; the report's ablation zeroes the
    rationale terms)."""

    temperature: float = 2.0
    kd: float = 1.0  # KL(teacher || student) on temperature-softened class distributions, x T^2
    ce: float = 0.5  # cross-entropy on gold labels
    token_teacher: float = 1.0  # BCE of token scores against the teacher's token scores
    token_human: float = 0.5  # class-weighted BCE against human rationales, where they exist
    human_pos_weight: float = 3.0
    patch_teacher: float = 1.0  # BCE of patch scores against the teacher's transferred scores
    patch_rank: float = 0.5  # KL between the patch-score distributions (ranks the top-k right)
    # The teacher's transferred scores span ~0.1 within an image; a low temperature turns
    # them into a distribution peaked on its top patches (what the top-k IoU compares).
    patch_rank_temperature: float = 0.02
    # KL from the teacher's transfer shares (which words each patch's score comes from) to the
    # student's transfer attention, per patch: the attention-relation term (transfer head only).
    align: float = 1.0
    # Hidden-state alignment (MiniLM/TinyBERT-style): 1 - cosine between the student's fused token
    # and patch states and the teacher's final ones (the states its IPOT plan is made from), mean
    # over the content tokens plus mean over the patches, on posts with a photo and words.
    hidden: float = 0.0
    # Relation alignment to the one-step transfer over the teacher's own final states: per patch,
    # KL from softmax over the words of cosine(teacher patch, teacher word) / `relation_temperature`
    # to the student's transfer attention (research/results/patch_ceiling.md: that one-step form,
    # at this temperature, is the single-pass transfer closest to the teacher's IPOT top-5). Needs the states.
    relation: float = 0.0
    relation_temperature: float = 0.02

    def without_rationale_terms(self) -> DistillWeights:
        return replace(self, token_teacher=0.0, token_human=0.0, patch_teacher=0.0, patch_rank=0.0, align=0.0,
                       relation=0.0)


@dataclass
class StudentOutput:
    logits: Tensor  # [B, C]
    token_scores: Tensor  # [B, N] in [0, 1], 0 on special/padding tokens
    token_rationale: Tensor  # [B, N] bool
    patch_scores: Tensor  # [B, M] in [0, 1], 0 without an image
    patch_rationale: Tensor  # [B, M] bool, top-k valid patches
    token_logits: Tensor  # [B, N] raw (for the losses)
    patch_logits: Tensor  # [B, M] (log-odds of patch_scores)
    # [B, M, N] each patch's attention over the tokens when the patch head is the one-step transfer
    alignment: Tensor | None = None
    token_states: Tensor | None = None  # [B, N, D] fused (the hidden-state term compares them)
    patch_states: Tensor | None = None  # [B, M, D] fused


# ----------------------------------------------------------------------------- model


def truncated_bert(bert: nn.Module, layers: int) -> nn.Module:
    """A copy of `bert` keeping its embeddings and first `layers` encoder layers."""
    small = copy.deepcopy(bert)
    small.encoder.layer = nn.ModuleList(list(small.encoder.layer[:layers]))
    small.config.num_hidden_layers = layers
    if getattr(small, "pooler", None) is not None:
        small.pooler = None
    return small


class RationaleStudent(nn.Module):
    def __init__(self, config: StudentConfig, bert: nn.Module, image_tower: nn.Module | None = None,
                 image_top: nn.Module | None = None):
        super().__init__()
        if len(bert.encoder.layer) != config.text_layers:
            raise ValueError(f"bert has {len(bert.encoder.layer)} layers, config says {config.text_layers}")
        self.config = config
        d = config.hidden
        self.text = TextTower(bert, config.frozen_text_layers)
        self.image = image_tower
        self.image_top = image_top  # tower blocks fine-tuned here (tuned_image_blocks), or None
        self.patch_proj = nn.Sequential(nn.LayerNorm(config.image_channels), nn.Linear(config.image_channels, d))
        self.row_embed = nn.Embedding(config.patch_grid, d)
        self.col_embed = nn.Embedding(config.patch_grid, d)
        self.modality = nn.Embedding(2, d)
        self.norm = nn.LayerNorm(d)
        self.fusion = _fusion_layer(config)
        # Layers after the first live apart, so one-layer checkpoints keep their parameter names.
        self.fusion_more = nn.ModuleList(_fusion_layer(config) for _ in range(config.fusion_layers - 1))
        self.token_head = nn.Linear(d, 1)
        if config.transfer_dim:
            # One-step transfer: patches (queries) attend over tokens (keys). Identity-initialised
            # projections start from the cosine of the fused states, as the teacher's transfer does.
            self.align_patch = _identity_linear(d, config.transfer_dim)
            self.align_token = _identity_linear(d, config.transfer_dim)
            self.align_log_temperature = nn.Parameter(torch.tensor(math.log(config.transfer_temperature)))
        else:
            h = config.patch_head_hidden
            self.patch_head = nn.Sequential(nn.Linear(d, h), nn.GELU(), nn.Linear(h, 1)) if h else nn.Linear(d, 1)
        self.photo_head = nn.Linear(d, 1) if config.photo_head else None
        self.source_offset = (nn.Parameter(torch.zeros(config.source_offsets, config.num_labels))
                              if config.source_offsets else None)  # training loss only: see StudentConfig
        self.classifier = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(2 * d, d), nn.GELU(),
                                        nn.Dropout(config.dropout), nn.Linear(d, config.num_labels))
        grid = torch.arange(config.patch_grid)
        self.register_buffer("_rows", grid.repeat_interleave(config.patch_grid), persistent=False)
        self.register_buffer("_cols", grid.repeat(config.patch_grid), persistent=False)
        # Training speed-up: a batch without any photo skips the 49 (all masked) patch keys.
        # Same result; `StudentExport` turns it off so the exported graph has no branch.
        self.skip_empty_image = True

    # -- pieces ------------------------------------------------------------------------------

    def content_mask(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        return content_mask(input_ids, attention_mask, self.config)

    def select_tokens(self, scores: Tensor, content: Tensor) -> Tensor:
        return select_tokens(scores, content, self.config)

    def transfer_alignment(self, tokens: Tensor, patch_states: Tensor, content: Tensor) -> Tensor:
        """[B, M, N]: each patch's attention over the content tokens (rows sum to 1; a post
        without content tokens spreads it over padding whose scores are 0)."""
        t = self.align_log_temperature.exp().clamp_min(1e-3)
        return soft_assignment(self.align_patch(patch_states), self.align_token(tokens), content, t)

    def train(self, mode: bool = True) -> RationaleStudent:
        super().train(mode)
        if self.image_top is not None:
            self.image_top.eval()  # BatchNorm statistics stay ImageNet's; the weights still learn
        return self

    def patch_features(self, inputs: TeacherInputs) -> Tensor:
        """[B, M, C]: the frozen tower's features (cached or computed), then the fine-tuned blocks."""
        low = patch_features(inputs, self.image, self.config)  # [B, M, C_low]
        if self.image_top is None or (inputs.image_features is None and inputs.pixel_values is None):
            return low  # nothing tuned, or the zero features of a batch without photos
        b, m, c = low.shape
        g = self.config.patch_grid
        x = self.image_top(low.transpose(1, 2).reshape(b, c, g, g))
        return x.flatten(2).transpose(1, 2)

    def fuse(self, x: Tensor, padding: Tensor) -> Tensor:
        for layer in (self.fusion, *self.fusion_more):
            x = layer(x, src_key_padding_mask=padding)
        return x

    # -- forward -----------------------------------------------------------------------------

    def forward(self, inputs: TeacherInputs) -> StudentOutput:
        token_mask = inputs.attention_mask.bool()
        states = inputs.text_states.float() if inputs.text_states is not None else self.text.lower(
            inputs.input_ids, inputs.attention_mask)
        text = self.text.upper(states, token_mask) + self.modality.weight[0]
        feats = self.patch_features(inputs)
        b, m = feats.shape[:2]
        patch_mask = inputs.image_present.bool()[:, None].expand(b, m)
        if inputs.patch_mask is not None:
            patch_mask = patch_mask & inputs.patch_mask.bool()
        patches = self.patch_proj(feats) + self.row_embed(self._rows) + self.col_embed(self._cols) + self.modality.weight[1]
        n = text.shape[1]
        if self.skip_empty_image and not bool(patch_mask.any()):
            tokens = self.fuse(self.norm(text), ~token_mask)
            patch_states = torch.zeros_like(patches)
        else:
            joint = self.norm(torch.cat([text, patches], dim=1))
            fused = self.fuse(joint, ~torch.cat([token_mask, patch_mask], dim=1))
            tokens, patch_states = fused[:, :n], fused[:, n:]

        content = self.content_mask(inputs.input_ids, inputs.attention_mask)
        token_logits = self.token_head(tokens).squeeze(-1)
        token_scores = torch.sigmoid(token_logits) * content
        if self.config.transfer_dim:
            alignment = self.transfer_alignment(tokens, patch_states, content)
            # The token scores are carried over, not changed by it: the patch losses train the alignment.
            patch_scores = (alignment * token_scores.detach().unsqueeze(1)).sum(-1) * patch_mask
            patch_logits = torch.logit(patch_scores.clamp(1e-6, 1 - 1e-6))
        else:
            patch_logits = self.patch_head(patch_states).squeeze(-1)
            patch_scores = torch.sigmoid(patch_logits) * patch_mask
        if self.photo_head is not None:
            # Without words the transfer has nothing to carry: the photo's own attention scores
            # its patches (a float switch, so the exported graph has no branch).
            words = content.any(1, keepdim=True).to(patch_scores.dtype)
            own = torch.sigmoid(self.photo_head(patch_states).squeeze(-1)) * patch_mask
            patch_scores = words * patch_scores + (1 - words) * own
            patch_logits = torch.logit(patch_scores.clamp(1e-6, 1 - 1e-6))

        # The class sees only rationale-weighted summaries of the tokens and the patches.
        eps = self.config.pool_eps
        text_pool = (token_scores.unsqueeze(-1) * tokens).sum(1) / (token_scores.sum(1, keepdim=True) + eps)
        pooled = self.norm(patches) if self.config.local_patch_pool else patch_states
        image_pool = (patch_scores.unsqueeze(-1) * pooled).sum(1) / (patch_scores.sum(1, keepdim=True) + eps)
        logits = self.classifier(torch.cat([text_pool, image_pool], dim=-1))

        token_rationale = self.select_tokens(token_scores.detach(), content)
        patch_rationale = top_patches(patch_scores.detach(), patch_mask, k=self.config.top_k_patches)
        return StudentOutput(logits, token_scores, token_rationale, patch_scores, patch_rationale,
                             token_logits, patch_logits, alignment if self.config.transfer_dim else None,
                             tokens, patch_states)


def soft_assignment(patches: Tensor, tokens: Tensor, content: Tensor, temperature: Tensor | float) -> Tensor:
    """[B, M, N]: each patch's softmax over the content tokens of cosine(patch, token) / temperature
    (a post without content tokens spreads it over padding)."""
    sim = F.normalize(patches, dim=-1) @ F.normalize(tokens, dim=-1).transpose(1, 2) / temperature
    return sim.masked_fill(~content.bool().unsqueeze(1), -1e4).softmax(-1)


def _fusion_layer(config: StudentConfig) -> nn.TransformerEncoderLayer:
    return nn.TransformerEncoderLayer(config.hidden, config.fusion_heads, config.fusion_ffn, config.dropout,
                                      activation="gelu", batch_first=True)


def _identity_linear(d_in: int, d_out: int) -> nn.Linear:
    layer = nn.Linear(d_in, d_out)
    with torch.no_grad():
        layer.weight.copy_(torch.eye(d_out, d_in))
        layer.bias.zero_()
    return layer


def student_from_teacher(teacher: CrossModalRationaleTeacher, config: StudentConfig | None = None,
                         image_tower: nn.Module | None = None) -> RationaleStudent:
    """A student initialised from the teacher: its first MiniLM layers, patch projection,
    position/modality embeddings and first fusion layer(s)."""
    config = config or StudentConfig()
    enc = teacher.backbone
    if not isinstance(enc, JointEncoder):
        raise TypeError("the student is initialised from a JointEncoder teacher (not the ViLT backbone)")
    top = None
    if config.tuned_image_blocks:
        from crisislens.distill.teacher import load_efficientnet_lite0

        top = tuned_image_top(config, load_efficientnet_lite0())  # ImageNet weights to start from
    student = RationaleStudent(config, truncated_bert(enc.text.bert, config.text_layers), image_tower, top)
    names = ["row_embed", "col_embed", "modality", "norm"]
    if config.image_channels == enc.config.image_channels:
        names.append("patch_proj")  # a cut tower's narrower features need a projection of their own
    for name in names:
        getattr(student, name).load_state_dict(getattr(enc, name).state_dict())
    if config.fusion_layers > len(enc.fusion.layers):
        raise ValueError(f"fusion_layers={config.fusion_layers}: the teacher has {len(enc.fusion.layers)} to copy")
    for mine, theirs in zip((student.fusion, *student.fusion_more), enc.fusion.layers):
        mine.load_state_dict(theirs.state_dict())
    return student


def student_from_pretrained(config: StudentConfig, image_tower: nn.Module | None = None) -> RationaleStudent:
    """A student started from the pretrained encoders alone (all-MiniLM-L6-v2's first
    `text_layers` layers; the image tower is frozen ImageNet weights), its fusion and heads new:
    the student v2 is distilled from the teacher v2's outputs, whose MPNet has no layer to copy."""
    from crisislens.distill.teacher import load_minilm

    return RationaleStudent(config, truncated_bert(load_minilm(), config.text_layers), image_tower,
                            tuned_image_top(config))


def build_student(config: StudentConfig, bert_config: dict[str, Any], image_tower: nn.Module | None = None) -> RationaleStudent:
    """An untrained student shaped by `config` and a BERT config dict (for loading checkpoints
    without the MiniLM package)."""
    from transformers import BertConfig, BertModel

    bc = BertConfig.from_dict({**bert_config, "num_hidden_layers": config.text_layers})
    return RationaleStudent(config, BertModel(bc, add_pooling_layer=False), image_tower, tuned_image_top(config))


def save_student(model: RationaleStudent, path: Any, extra: dict[str, Any] | None = None) -> None:
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("image.")}
    torch.save({"model": state, "config": model.config.to_dict(), "bert_config": model.text.bert.config.to_dict(),
                **(extra or {})}, path)


def load_student(path: Any, image_tower: nn.Module | None = None) -> RationaleStudent:
    from crisislens.distill.loop import load_checkpoint

    ckpt = load_checkpoint(Path(path))
    model = build_student(StudentConfig.from_dict(ckpt["config"]), ckpt["bert_config"], image_tower)
    missing, unexpected = model.load_state_dict(ckpt["model"], strict=False)
    bad = [k for k in missing if not k.startswith("image.")]
    if bad or unexpected:
        raise ValueError(f"{path}: checkpoint does not fit the student (missing {bad[:5]}, unexpected {unexpected[:5]})")
    return model.eval()


class StudentExport(nn.Module):
    """Tensor-in, tensor-out wrapper the ONNX export and latency runs use:
    (input_ids [B, S], attention_mask [B, S], pixel_values [K, 3, H, W], image_index [B],
    patch_keep [B, M]) -> (logits, token_scores, patch_scores).

    The photos come as their own batch of K (only the posts that have one): `image_index[i]` is
    the row of post i's photo in `pixel_values`, or -1 without one. So a batch of text-only
    posts runs the image tower on one placeholder image (K = 1, all indices -1), not on B blank
    pictures. `patch_keep` 0 removes a patch as a token (out of the fusion's attention and the
    rationale pool: the deletion test); all ones (the default) keeps every patch."""

    def __init__(self, student: RationaleStudent):
        super().__init__()
        if student.image is None:
            raise ValueError("export needs the student with its image tower (pixel_values input)")
        self.student = student
        self.student.skip_empty_image = False

    def forward(self, input_ids: Tensor, attention_mask: Tensor, pixel_values: Tensor, image_index: Tensor,
                patch_keep: Tensor | None = None):
        features = self.student.image(pixel_values)  # [K, M, C]
        present = image_index >= 0
        gathered = features[image_index.clamp(min=0)]  # [B, M, C]; rows without a photo are masked
        keep = None if patch_keep is None else patch_keep > 0
        out = self.student(TeacherInputs(input_ids, attention_mask, present, image_features=gathered, patch_mask=keep))
        return out.logits, out.token_scores, out.patch_scores


# ----------------------------------------------------------------------------- loss


@dataclass
class TeacherTargets:
    """The teacher's cached outputs, padded to the batch: logits [B, C], token scores [B, N],
    patch scores [B, M], has_image [B] (rows whose teacher saw a photo); optionally its transfer
    shares [B, M, N] (each patch's column of `ipot.plan_shares`) and the rows that have them."""

    logits: Tensor
    token_scores: Tensor
    patch_scores: Tensor
    has_image: Tensor
    alignment: Tensor | None = None
    has_alignment: Tensor | None = None
    token_states: Tensor | None = None  # [B, N, D] the teacher's final fused states
    patch_states: Tensor | None = None  # [B, M, D]
    has_states: Tensor | None = None  # [B]


def _masked_bce(scores: Tensor, target: Tensor, mask: Tensor, weight: Tensor | None = None) -> Tensor | None:
    if not bool(mask.any()):
        return None
    w = None if weight is None else weight[mask]
    return F.binary_cross_entropy(scores.clamp(1e-6, 1 - 1e-6)[mask], target[mask].float(), weight=w)


def _kl_terms(target: Tensor, log_q: Tensor) -> Tensor:
    """Elementwise terms of KL(target || q); sum them over the distribution's axis."""
    return target * (target.clamp_min(1e-12).log() - log_q)


def distill_loss(out: StudentOutput, teacher: TeacherTargets, labels: Tensor, content: Tensor, patch_mask: Tensor,
                 weights: DistillWeights, human: Tensor | None = None, has_human: Tensor | None = None,
                 class_weights: Tensor | None = None) -> tuple[Tensor, dict[str, float]]:
    """Sum of the weighted terms; `parts` holds each unweighted term (0 when it does not apply)."""
    t = weights.temperature
    parts: dict[str, float] = {}
    total = out.logits.new_zeros(())

    def add(name: str, weight: float, value: Tensor | None) -> None:
        nonlocal total
        parts[name] = 0.0 if value is None else float(value.detach())
        if value is not None and weight:
            total = total + weight * value

    kd = F.kl_div(F.log_softmax(out.logits / t, -1), F.softmax(teacher.logits / t, -1), reduction="batchmean") * t * t
    add("kd", weights.kd, kd)
    # Rows without a gold label (label -100: the synthetic transfer pairs) add no cross-entropy.
    gold = labels >= 0
    add("ce", weights.ce, F.cross_entropy(out.logits[gold], labels[gold], weight=class_weights) if bool(gold.any()) else None)
    add("token_teacher", weights.token_teacher, _masked_bce(out.token_scores, teacher.token_scores, content))
    if human is not None and has_human is not None:
        rows = has_human.bool()[:, None] & content
        w = torch.where(human > 0.5, weights.human_pos_weight, 1.0)
        add("token_human", weights.token_human, _masked_bce(out.token_scores, human, rows, w))
    else:
        parts["token_human"] = 0.0
    # Patches learn from the teacher only where it transferred something: a photo with text.
    valid = patch_mask.bool() & (teacher.has_image.bool() & content.any(1))[:, None]
    add("patch_teacher", weights.patch_teacher, _masked_bce(out.patch_scores, teacher.patch_scores, valid))
    rows = valid.any(1)
    if bool(rows.any()):
        neg = torch.finfo(out.patch_logits.dtype).min
        target = F.softmax((teacher.patch_scores / weights.patch_rank_temperature).masked_fill(~valid, neg), -1)[rows]
        # A transfer head's scores are shares like the teacher's: softened the same way, so the
        # term is 0 when they match up to a constant. A free head ranks by its own logits.
        transfer = out.alignment is not None
        mine = out.patch_scores / weights.patch_rank_temperature if transfer else out.patch_logits
        logp = F.log_softmax(mine.masked_fill(~valid, neg), -1)[rows]
        rank = _kl_terms(target, logp).masked_fill(~valid[rows], 0.0).sum(-1).mean()
        add("patch_rank", weights.patch_rank, rank)
    else:
        parts["patch_rank"] = 0.0
    if out.alignment is not None and teacher.alignment is not None and teacher.has_alignment is not None:
        cells = valid & teacher.has_alignment.bool()[:, None] & (teacher.alignment.sum(-1) > 0)  # [B, M]
        if bool(cells.any()):
            target = teacher.alignment[cells]  # [P, N], each row sums to 1 over the words
            logq = out.alignment[cells].clamp_min(1e-12).log()
            add("align", weights.align, _kl_terms(target, logq).sum(-1).mean())
        else:
            parts["align"] = 0.0
    else:
        parts["align"] = 0.0
    parts["hidden"] = parts["relation"] = 0.0
    if teacher.token_states is not None and teacher.patch_states is not None and teacher.has_states is not None:
        rows = teacher.has_states.bool() & content.any(1) & patch_mask.bool().any(1)
        words, cells = content.bool() & rows[:, None], patch_mask.bool() & rows[:, None]
        if weights.hidden and out.token_states is not None and out.patch_states is not None and bool(cells.any()):
            tokens = 1 - F.cosine_similarity(out.token_states[words], teacher.token_states[words], dim=-1)
            patches = 1 - F.cosine_similarity(out.patch_states[cells], teacher.patch_states[cells], dim=-1)
            add("hidden", weights.hidden, tokens.mean() + patches.mean())
        if weights.relation and out.alignment is not None and bool(cells.any()):
            target = soft_assignment(teacher.patch_states, teacher.token_states, content, weights.relation_temperature)
            logq = out.alignment[cells].clamp_min(1e-12).log()
            add("relation", weights.relation, _kl_terms(target[cells], logq).sum(-1).mean())
    return total, parts


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["DistillWeights", "ImageTower", "RationaleStudent", "StudentConfig", "StudentExport", "StudentOutput",
           "TeacherTargets", "build_student", "distill_loss", "frozen_image_blocks", "load_student", "save_student",
           "student_from_pretrained", "student_from_teacher", "student_image_config", "student_image_tower", "tuned_image_top"]
