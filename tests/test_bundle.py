"""The model bundle format: written whole or not at all, refused when anything in it changed."""

from __future__ import annotations

import hashlib
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, processors

from crisislens.runtime.bundle import write as bundle_mod
from crisislens.runtime.bundle import (
    Bundle,
    BundleError,
    VariantSpec,
    load_bundle,
    update_metrics,
    verify_bundle,
    write_bundle,
)
from crisislens.runtime.labels import LABEL_NAMES
from crisislens.runtime.preprocessing import ImageConfig, TextConfig, TextEncoder

TEXT = TextConfig(max_length=32)
IMAGE = ImageConfig(size=64, patch_grid=4)


@pytest.fixture(autouse=True)
def no_git(monkeypatch):
    """Provenance without running git: the tests stay fast and never touch the repository."""
    monkeypatch.setattr(bundle_mod, "provenance", lambda command: {
        "command": command, "git_commit": "abc1234", "git_dirty": False,
        "created": "2025-01-01T00:00:00+00:00", "environment": {"packages": {"numpy": np.__version__}},
    })


@pytest.fixture
def sources(tmp_path: Path) -> dict[str, Path]:
    """Tiny stand-ins for the inputs: fake ONNX bytes (nothing here parses ONNX) and a real tokenizer."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "fp32.onnx").write_bytes(b"\x08\x07fake-fp32-model" * 100)
    (src / "int8.onnx").write_bytes(b"\x08\x07fake-int8-model" * 50)
    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "flood": 4, "help": 5}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tokenizer.save(str(src / "tokenizer.json"))
    return {"fp32": src / "fp32.onnx", "int8": src / "int8.onnx", "tokenizer": src / "tokenizer.json"}


def make(out: Path, sources: dict[str, Path], **overrides) -> Path:
    kwargs = dict(
        variants={
            "fp32": VariantSpec(sources["fp32"], "fp32", None, "cpu", {"macro_f1": 0.71}),
            "int8": VariantSpec(sources["int8"], "int8", "dynamic", "cpu", {"macro_f1": 0.70}),
        },
        tokenizer_json=sources["tokenizer"],
        text_config=TEXT,
        image_config=IMAGE,
        model_info={"architecture": "minilm+effnet-lite0", "patch_grid": 4, "top_k_patches": 3},
        command="crisislens export bundle --out b",
        default_variant="int8",
        inputs=["input_ids", "attention_mask", "pixel_values"],
        outputs=["logits"],
    )
    kwargs.update(overrides)
    return write_bundle(out, **kwargs)


def problems_of(excinfo: pytest.ExceptionInfo[BundleError]) -> str:
    return "\n".join(excinfo.value.problems)


def relist(folder: Path, rel: str, data: bytes) -> None:
    """Change a listed file *and* its manifest entry, as a careless hand edit would."""
    (folder / rel).write_bytes(data)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"][rel] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (folder / "manifest.json").write_text(json.dumps(manifest))


def edit_manifest(folder: Path, change) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    change(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))


# ----------------------------------------------------------------------------- round trip


def test_round_trip(tmp_path, sources):
    out = make(tmp_path / "b", sources)
    b = load_bundle(out)
    assert isinstance(b, Bundle) and b.path == out
    assert b.text_config == TEXT and b.image_config == IMAGE
    assert b.labels == LABEL_NAMES
    assert b.default_variant == "int8" and b.variant().name == "int8"
    fp32 = b.variant("fp32")
    assert fp32.path == out / "model.fp32.onnx"
    assert fp32.path.read_bytes() == sources["fp32"].read_bytes()
    assert (fp32.precision, fp32.quantization, fp32.intended, fp32.metrics) == ("fp32", None, "cpu", {"macro_f1": 0.71})
    assert fp32.sha256 == hashlib.sha256(sources["fp32"].read_bytes()).hexdigest()
    assert b.variant("int8").quantization == "dynamic"
    assert b.model_info["top_k_patches"] == 3
    assert b.sha256 == hashlib.sha256((out / "manifest.json").read_bytes()).hexdigest()
    assert b.short_hash == b.sha256[:12]
    assert verify_bundle(out) == []

    m = b.manifest
    assert (m["format"], m["format_version"], m["command"], m["git_commit"]) == (
        "crisislens-bundle", 1, "crisislens export bundle --out b", "abc1234")
    assert m["created"] and "numpy" in m["packages"]
    assert m["inputs"] == ["input_ids", "attention_mask", "pixel_values"] and m["outputs"] == ["logits"]
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert set(m["files"]) == on_disk - {"manifest.json"}
    assert json.loads((out / "labels.json").read_text()) == list(LABEL_NAMES)

    encoder = TextEncoder.from_file(b.tokenizer_path, b.text_config)
    assert encoder.encode_batch(["flood help"]).input_ids.tolist() == [[2, 4, 5, 3]]


def test_tuple_variants_numpy_metrics_and_extra_files(tmp_path, sources):
    data = tmp_path / "src" / "weights.bin"
    data.write_bytes(b"external data")
    out = make(tmp_path / "b", sources,
               variants={"int8-qdq": (sources["int8"], "int8", "static-qdq", "tensorrt", {"acc": np.float32(0.5)})},
               default_variant="int8-qdq", extra_files={"extra/model.int8-qdq.onnx.data": data})
    b = load_bundle(out)
    assert b.variant().path.name == "model.int8-qdq.onnx" and b.variant().intended == "tensorrt"
    assert b.variant().metrics == {"acc": 0.5}
    assert "extra/model.int8-qdq.onnx.data" in b.manifest["files"]


# ----------------------------------------------------------------------------- refusals on load


def test_tampered_file_is_refused_by_name(tmp_path, sources):
    out = make(tmp_path / "b", sources)
    model = out / "model.int8.onnx"
    data = bytearray(model.read_bytes())
    data[10] ^= 0x01
    model.write_bytes(bytes(data))
    with pytest.raises(BundleError) as excinfo:
        load_bundle(out)
    message = str(excinfo.value)
    assert "model.int8.onnx: sha256 mismatch (manifest" in message
    assert "modified or corrupted" in message and str(out) in message and "crisislens export bundle" in message
    assert len(excinfo.value.problems) == 1
    # Same size: a quick load without hashing does not see it; the check does.
    assert load_bundle(out, verify=False).variant("int8").path == model
    assert verify_bundle(out, hashes=False) == [] and len(verify_bundle(out)) == 1


def test_a_run_hashes_only_the_variant_it_uses(tmp_path, sources):
    """`hash_for`: the variant a run loads is hashed; another variant's file only size-checked."""
    from crisislens.runtime.bundle.verify import DEFAULT

    out = make(tmp_path / "b", sources)
    default = load_bundle(out).default_variant
    other = next(name for name in load_bundle(out).variants if name != default)
    model = load_bundle(out).variant(other).path
    data = bytearray(model.read_bytes())
    data[10] ^= 0x01
    model.write_bytes(bytes(data))
    assert load_bundle(out, hash_for=DEFAULT).variant().name == default  # the tampered file is never read
    for asked in (other, None, "no-such-variant"):  # the tampered variant, or every variant: refused
        with pytest.raises(BundleError, match="sha256 mismatch"):
            load_bundle(out, hash_for=asked)
    model.write_bytes(bytes(data[:-1]))  # a size change is seen even where nothing is hashed
    with pytest.raises(BundleError, match="size mismatch"):
        load_bundle(out, hash_for=DEFAULT)


def test_truncated_file_is_a_size_mismatch(tmp_path, sources):
    out = make(tmp_path / "b", sources)
    (out / "model.fp32.onnx").write_bytes(b"short")
    with pytest.raises(BundleError) as excinfo:
        load_bundle(out, verify=False)
    assert "model.fp32.onnx: size mismatch (manifest 1700 bytes, file 5 bytes)" in problems_of(excinfo)


@pytest.mark.parametrize("name", ["tokenizer.json", "model.fp32.onnx", "preprocess.json", "labels.json"])
def test_missing_file_is_refused(tmp_path, sources, name):
    out = make(tmp_path / "b", sources)
    (out / name).unlink()
    with pytest.raises(BundleError) as excinfo:
        load_bundle(out)
    assert f"{name}: listed in manifest.json but missing" in problems_of(excinfo)


def test_required_file_not_listed_is_refused(tmp_path, sources):
    out = make(tmp_path / "b", sources)
    edit_manifest(out, lambda m: m["files"].pop("tokenizer.json"))
    with pytest.raises(BundleError) as excinfo:
        load_bundle(out)
    assert "tokenizer.json: required file not listed in manifest.json" in problems_of(excinfo)


def test_missing_manifest_is_refused(tmp_path, sources):
    out = make(tmp_path / "b", sources)
    (out / "manifest.json").unlink()
    with pytest.raises(BundleError) as excinfo:
        load_bundle(out)
    assert "manifest.json: missing" in problems_of(excinfo)
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "nowhere")


def test_interrupted_write_leaves_no_manifest(tmp_path, sources, monkeypatch):
    out = make(tmp_path / "b", sources)

    def crash(folder, manifest):
        raise KeyboardInterrupt

    monkeypatch.setattr(bundle_mod, "_write_manifest", crash)
    with pytest.raises(KeyboardInterrupt):
        make(out, sources, overwrite=True)  # rebuilding over a good bundle, interrupted
    assert (out / "model.fp32.onnx").is_file() and not (out / "manifest.json").exists()
    with pytest.raises(BundleError, match="manifest.json: missing"):
        load_bundle(out)


@pytest.mark.parametrize("version, words", [(2, "newer than this CrisisLens reads"), (0, "no longer supported"),
                                            ("1", "must be an integer")])
def test_wrong_format_version(tmp_path, sources, version, words):
    out = make(tmp_path / "b", sources)
    edit_manifest(out, lambda m: m.update(format_version=version))
    with pytest.raises(BundleError) as excinfo:
        load_bundle(out)
    assert f"manifest.json: format_version" in problems_of(excinfo) and words in problems_of(excinfo)


def test_not_a_bundle_manifest(tmp_path, sources):
    out = make(tmp_path / "b", sources)
    edit_manifest(out, lambda m: m.update(format="something-else"))
    with pytest.raises(BundleError, match="not a CrisisLens bundle"):
        load_bundle(out)
    (out / "manifest.json").write_text("{ not json")
    with pytest.raises(BundleError, match="manifest.json: not readable JSON"):
        load_bundle(out)


@pytest.mark.parametrize("labels, words", [
    (list(reversed(LABEL_NAMES)), "different order"),
    (list(LABEL_NAMES[:3]), "missing class(es) other_relevant_information, not_humanitarian"),
    ([*LABEL_NAMES, "aliens"], "unknown class(es) aliens"),
    ([*LABEL_NAMES, LABEL_NAMES[0]], "duplicated class(es) affected_individuals"),
])
def test_wrong_labels_are_refused_on_load_and_write(tmp_path, sources, labels, words):
    out = make(tmp_path / "b", sources)
    relist(out, "labels.json", json.dumps(labels).encode())
    with pytest.raises(BundleError) as excinfo:
        load_bundle(out)
    assert f"labels.json: " in problems_of(excinfo) and words in problems_of(excinfo)
    with pytest.raises(BundleError) as excinfo:
        make(tmp_path / "c", sources, labels=labels)
    assert words in problems_of(excinfo) and not (tmp_path / "c").exists()


def test_bad_preprocess_config_is_refused(tmp_path, sources):
    out = make(tmp_path / "b", sources)
    relist(out, "preprocess.json", json.dumps({"text": {"max_lenght": 3}, "image": IMAGE.to_dict()}).encode())
    with pytest.raises(BundleError) as excinfo:
        load_bundle(out)
    assert "preprocess.json: text: unknown TextConfig key(s): max_lenght" in problems_of(excinfo)


def test_unlisted_onnx_is_refused_other_files_ignored(tmp_path, sources):
    out = make(tmp_path / "b", sources)
    (out / "README.txt").write_text("notes")
    assert verify_bundle(out) == []
    (out / "model.fp16.onnx").write_bytes(b"dropped in by hand")
    with pytest.raises(BundleError) as excinfo:
        load_bundle(out)
    assert "model.fp16.onnx: model file not listed in manifest.json" in problems_of(excinfo)


def test_manifest_paths_cannot_leave_the_bundle(tmp_path, sources):
    out = make(tmp_path / "b", sources)
    (tmp_path / "secret").write_text("x")
    edit_manifest(out, lambda m: m["files"].update({"../secret": {"sha256": "0" * 64, "bytes": 1}}))
    with pytest.raises(BundleError, match="'../secret' is not a relative path inside the bundle"):
        load_bundle(out)


def test_bad_variant_entries_are_refused(tmp_path, sources):
    out = make(tmp_path / "b", sources)

    def change(m):
        m["variants"]["int8"]["quantization"] = None
        m["variants"]["fp32"]["file"] = "model.other.onnx"
        m["default_variant"] = "fp16"

    edit_manifest(out, change)
    with pytest.raises(BundleError) as excinfo:
        load_bundle(out)
    found = problems_of(excinfo)
    assert "variant 'int8': an int8 model needs quantization" in found
    assert "variant 'fp32': file 'model.other.onnx' is not listed" in found
    assert "default_variant 'fp16' is not one of the variants: fp32, int8" in found


def test_malformed_file_entry_is_reported_not_a_crash(tmp_path, sources):
    out = make(tmp_path / "b", sources)
    edit_manifest(out, lambda m: m["files"].update({"model.fp32.onnx": "abc"}))
    with pytest.raises(BundleError, match="files: model.fp32.onnx: needs a 64-hex-digit sha256"):
        load_bundle(out)


def test_unknown_variant_lists_the_available_ones(tmp_path, sources):
    b = load_bundle(make(tmp_path / "b", sources))
    with pytest.raises(BundleError) as excinfo:
        b.variant("fp16")
    assert "no variant 'fp16'; available: fp32, int8 (default)" in str(excinfo.value)
    assert "Choose one of the available variants" in str(excinfo.value)


def test_bundle_error_pickles():
    error = BundleError("/b", ["x.onnx: broken"])
    again = pickle.loads(pickle.dumps(error))
    assert str(again) == str(error) and again.problems == ["x.onnx: broken"]


# ----------------------------------------------------------------------------- writing


def test_overwrite_protection(tmp_path, sources):
    out = make(tmp_path / "b", sources)
    with pytest.raises(BundleError, match="not empty") as excinfo:
        make(out, sources)
    assert "overwrite=True" in str(excinfo.value)
    (out / "notes.txt").write_text("keep me")
    make(out, sources, variants={"fp32": VariantSpec(sources["fp32"], "fp32", None, "cpu")},
         default_variant="fp32", overwrite=True)
    b = load_bundle(out)
    assert list(b.variants) == ["fp32"] and not (out / "model.int8.onnx").exists()
    assert (out / "notes.txt").read_text() == "keep me"  # only bundle files are removed
    (tmp_path / "file").write_text("x")
    with pytest.raises(BundleError, match="is a file"):
        make(tmp_path / "file", sources, overwrite=True)


def test_overwrite_refuses_a_stray_onnx_before_touching_anything(tmp_path, sources):
    out = make(tmp_path / "b", sources)
    (out / "old").mkdir()
    (out / "old" / "experiment.onnx").write_bytes(b"someone's model")
    with pytest.raises(BundleError, match="old/experiment.onnx: an ONNX file that is not part of the new bundle"):
        make(out, sources, overwrite=True)
    assert (out / "manifest.json").is_file() and (out / "model.int8.onnx").is_file()


def test_rebuild_in_place_keeps_a_source_inside_the_bundle(tmp_path, sources):
    out = make(tmp_path / "b", sources)
    model = out / "model.fp32.onnx"
    make(out, sources, variants={"fp32": (model, "fp32", None, "cpu")}, default_variant="fp32", overwrite=True)
    assert load_bundle(out).variant().path.read_bytes() == sources["fp32"].read_bytes()


@pytest.mark.parametrize("variants, default, words", [
    ({}, "fp32", "at least one model variant"),
    ({"fp32": ("missing.onnx", "fp32", None, "cpu")}, "fp32", "model.fp32.onnx: source file missing.onnx not found"),
    ({"Bad Name": ("x", "fp32", None, "cpu")}, "Bad Name", "names are lower-case"),
    ({"int8": ("x", "int4", None, "cpu")}, "int8", "precision 'int4' is not one of"),
    ({"fp16": ("x", "fp16", "dynamic", "gpu")}, "fp16", "a fp16 model has quantization null"),
    ({"fp32": ("x", "fp32", None, "tpu")}, "fp32", "intended 'tpu' is not one of"),
    ({"fp32": ("x", "fp32", None, "cpu", {"f1": float("nan")})}, "fp32", "metrics are not plain JSON"),
    ({"fp32": ("x", "fp32", None, "cpu")}, "int8", "default_variant 'int8' is not one of the variants: fp32"),
    ({"fp32": "x.onnx"}, "fp32", "expected a VariantSpec"),
])
def test_write_refuses_bad_arguments_before_writing(tmp_path, sources, variants, default, words):
    variants = {name: (spec if isinstance(spec, str) else (sources["fp32"] if spec[0] == "x" else spec[0], *spec[1:]))
                for name, spec in variants.items()}
    with pytest.raises(BundleError) as excinfo:
        make(tmp_path / "b", sources, variants=variants, default_variant=default)
    assert words in str(excinfo.value)
    assert not (tmp_path / "b").exists()


def test_write_refuses_extra_files_outside_or_clashing(tmp_path, sources):
    with pytest.raises(BundleError) as excinfo:
        make(tmp_path / "b", sources, extra_files={"../x": sources["fp32"], "labels.json": sources["fp32"]})
    assert "'../x': must be a relative path" in problems_of(excinfo)
    assert "'labels.json': that name is reserved" in problems_of(excinfo)


# ----------------------------------------------------------------------------- metrics and the bundle hash


def test_update_metrics(tmp_path, sources):
    out = make(tmp_path / "b", sources)
    before = load_bundle(out)
    merged = update_metrics(out, "int8", {"accuracy": np.float64(0.8), "ms_per_post_p50": 3.2})
    assert merged == {"macro_f1": 0.70, "accuracy": 0.8, "ms_per_post_p50": 3.2}
    after = load_bundle(out)
    assert after.variant("int8").metrics == merged
    assert after.variant("fp32").metrics == before.variant("fp32").metrics
    assert after.sha256 != before.sha256  # the bundle hash follows the manifest
    assert after.manifest["files"] == before.manifest["files"]
    assert not list(out.glob(".*.tmp"))
    assert update_metrics(out, "int8", {"size_mb": 1.0}, replace=True) == {"size_mb": 1.0}

    with pytest.raises(BundleError, match="no variant 'fp16' to update; available: fp32, int8"):
        update_metrics(out, "fp16", {"x": 1})
    with pytest.raises(BundleError, match="not plain JSON"):
        update_metrics(out, "int8", {"x": float("inf")})
    assert load_bundle(out).variant("int8").metrics == {"size_mb": 1.0}  # a refused update changes nothing
    (out / "manifest.json").unlink()
    with pytest.raises(BundleError, match="manifest.json: missing"):
        update_metrics(out, "int8", {"x": 1})


def test_a_variant_temperature_is_set_with_its_evidence_and_checked_on_load(tmp_path, sources):
    from crisislens.runtime.bundle import set_temperature

    out = make(tmp_path / "b", sources)
    before = load_bundle(out)
    assert before.variant("int8").temperature == 1.0  # none written: the model's own softmax
    set_temperature(out, "int8", 1.25, {"fitted_on": "crisismmd:dev", "n": 998})
    after = load_bundle(out)
    assert after.variant("int8").temperature == 1.25 and after.variant("fp32").temperature == 1.0
    assert after.variant("int8").metrics["calibration"] == {"temperature": 1.25, "fitted_on": "crisismmd:dev", "n": 998}
    assert after.variant("int8").metrics["macro_f1"] == 0.70  # the other metrics stay
    assert after.sha256 != before.sha256 and after.manifest["files"] == before.manifest["files"]
    for bad in (0.0, -1.0, float("nan"), True):
        with pytest.raises(BundleError, match="temperature must be a positive number"):
            set_temperature(out, "int8", bad, {})
    with pytest.raises(BundleError, match="no variant 'fp16' to update"):
        set_temperature(out, "fp16", 1.1, {})
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["variants"]["fp32"]["temperature"] = "warm"
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="variant 'fp32': temperature 'warm' is not a positive number"):
        load_bundle(out)


def test_bundle_hash_changes_with_the_manifest_only(tmp_path, sources):
    out = make(tmp_path / "b", sources)
    first = load_bundle(out).sha256
    assert load_bundle(out).sha256 == first  # stable across loads
    edit_manifest(out, lambda m: m["model"].update(rationale_threshold=0.4))
    assert load_bundle(out).sha256 != first


# ----------------------------------------------------------------------------- torch-free


def test_import_does_not_pull_in_torch():
    code = ("import sys, crisislens.runtime.bundle\n"
            "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'onnx'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
