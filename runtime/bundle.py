"""The model bundle: one folder that holds everything the runtime needs to classify a post.

```
bundle/
  manifest.json      what is here: provenance, every file's sha256 and size, the model variants
  tokenizer.json     Hugging Face tokenizers file
  preprocess.json    {"text": TextConfig.to_dict(), "image": ImageConfig.to_dict()}
  labels.json        the class names, exactly `LABEL_NAMES` in that order
  model.<variant>.onnx   one per variant: fp32, int8 (CPU dynamic), int8-qdq (static, TensorRT), fp16
```

`write_bundle` copies the files in and writes `manifest.json` last, atomically (temporary file +
`os.replace`): a bundle whose writing was interrupted has no manifest and is refused.
`load_bundle` checks every file listed in the manifest (present, same size, same sha256) before
anything is loaded, so a tampered or truncated model is refused by name rather than giving
quietly wrong predictions. `manifest.json` itself is not hashed: `update_metrics` may rewrite
it (with measured numbers) without touching any model file. `Bundle.sha256`, the hash of
`manifest.json`, identifies the exact bundle a prediction came from.

Rules a bundle must follow (each broken rule is reported by `verify_bundle`):
- `format` is "crisislens-bundle" and `format_version` is `FORMAT_VERSION`;
- every file except `manifest.json` is listed under `files`, with its sha256 and size;
- `tokenizer.json`, `preprocess.json`, `labels.json` and at least one variant are present;
- an `*.onnx` file that the manifest does not list is refused, not ignored: it is a model someone
  expected the runtime to use (or a leftover of an interrupted rebuild), and silently skipping it
  would run a different model than they think. Other unlisted files (notes, engine caches) are
  ignored;
- `labels.json` equals `LABEL_NAMES`, in order (every probability vector uses that order); a
  subset, an unknown name or another order is refused with which of these it is;
- a variant's optional `temperature` (default 1) is a positive number: the runtime divides the
  model's logits by it before the softmax (temperature scaling, fitted on held-out data by
  `crisislens export calibrate` through `set_temperature`). It moves confidences, never labels.

Torch-free: stdlib plus the runtime's own modules.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Union

from crisislens.runtime.errors import CrisisLensError
from crisislens.runtime.files import atomic_write
from crisislens.runtime.labels import LABEL_NAMES
from crisislens.runtime.preprocess import ImageConfig, TextConfig
from crisislens.runtime.reports import provenance

FORMAT = "crisislens-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TOKENIZER = "tokenizer.json"
PREPROCESS = "preprocess.json"
LABELS = "labels.json"
REQUIRED_FILES = (TOKENIZER, PREPROCESS, LABELS)

PRECISIONS = ("fp32", "fp16", "int8")
QUANTIZATIONS = (None, "dynamic", "static-qdq", "weight-only")
INTENDED = ("cpu", "gpu", "tensorrt")

REBUILD = "Rebuild it with `crisislens export bundle`."
_VARIANT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20  # 1 MiB: ONNX files can be hundreds of MB


class BundleError(CrisisLensError, ValueError):
    """A bundle that cannot be written, loaded or used.

    `problems` each name the file or manifest field and what is wrong; the message adds the
    bundle folder and what to do (`hint`, by default: rebuild the bundle).
    """

    def __init__(self, bundle: str | Path, problems: Sequence[str] | str, hint: str | None = REBUILD):
        self.bundle = str(bundle)
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.hint = hint
        lines = [f"bundle {self.bundle}:", *(f"  - {p}" for p in self.problems)]
        if hint:
            lines.append(hint)
        super().__init__("\n".join(lines))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.bundle, self.problems, self.hint))


# ----------------------------------------------------------------------------- types


@dataclass(frozen=True)
class VariantSpec:
    """One model variant to put into a bundle (`write_bundle`); it is stored as `model.<name>.onnx`.

    `quantization` is None for fp32/fp16, "dynamic" (onnxruntime CPU), "weight-only" (int8
    weights, FP32 compute) or "static-qdq" (QDQ nodes,
    what TensorRT builds int8 engines from) for int8. `metrics` is free-form measured numbers
    (macro_f1, accuracy, size_mb, ...), stored as JSON.
    """

    source: Path
    precision: str
    quantization: str | None
    intended: str
    metrics: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "source", Path(self.source))
        object.__setattr__(self, "metrics", dict(self.metrics))


VariantLike = Union[VariantSpec, Sequence[Any]]


@dataclass(frozen=True)
class Variant:
    """A model variant of a loaded bundle. `sha256` names the exact model (engine caches use it)."""

    name: str
    path: Path
    precision: str
    quantization: str | None
    intended: str
    metrics: dict[str, Any]
    sha256: str
    bytes: int
    temperature: float = 1.0  # logits / temperature before the softmax (1: as the model gives them)


@dataclass(frozen=True)
class Bundle:
    """A loaded, checked bundle. Build it with `load_bundle`."""

    path: Path
    manifest: dict[str, Any]
    text_config: TextConfig
    image_config: ImageConfig
    labels: tuple[str, ...]
    variants: dict[str, Variant]
    default_variant: str
    manifest_sha256: str = field(repr=False)

    @property
    def sha256(self) -> str:
        """sha256 of `manifest.json` as loaded: the bundle's identity, stamped on predictions.

        It covers every file (the manifest lists their hashes) and the recorded metrics, so
        `update_metrics` gives a new bundle hash.
        """
        return self.manifest_sha256

    @property
    def short_hash(self) -> str:
        """The first 12 hex digits of `sha256`, for tables and log lines."""
        return self.manifest_sha256[:12]

    @property
    def tokenizer_path(self) -> Path:
        return self.path / TOKENIZER

    @property
    def model_info(self) -> dict[str, Any]:
        """The manifest's free-form `model` section (architecture, patch_grid, thresholds...)."""
        return self.manifest.get("model", {})

    def variant(self, name: str | None = None) -> Variant:
        """The variant called `name` (the bundle's default when None); a `BundleError` listing the
        available variants otherwise."""
        name = self.default_variant if name is None else name
        try:
            return self.variants[name]
        except KeyError:
            available = ", ".join(f"{n} (default)" if n == self.default_variant else n for n in self.variants)
            raise BundleError(self.path, f"no variant {name!r}; available: {available}",
                              hint="Choose one of the available variants.") from None


# ----------------------------------------------------------------------------- writing


def write_bundle(
    out_dir: str | Path,
    *,
    variants: Mapping[str, VariantLike],
    tokenizer_json: str | Path,
    text_config: TextConfig,
    image_config: ImageConfig,
    labels: Sequence[str] = LABEL_NAMES,
    model_info: Mapping[str, Any],
    command: str,
    default_variant: str,
    inputs: Sequence[str] = (),
    outputs: Sequence[str] = (),
    extra_files: Mapping[str, str | Path] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a bundle to `out_dir` and return its path.

    `variants` maps a name (fp32, int8, int8-qdq, fp16...) to a `VariantSpec` or the tuple
    `(source_path, precision, quantization, intended[, metrics])`. `extra_files` maps more
    relative paths in the bundle to source files (e.g. ONNX external data). Every input is checked
    before anything is written. An existing non-empty `out_dir` is refused unless `overwrite`;
    then its manifest goes first (the half-written folder is never taken for a bundle) and its
    old model files after it. `manifest.json` is written last and atomically.
    """
    out = Path(out_dir)
    specs = {name: _as_spec(out, name, value) for name, value in variants.items()}
    extras = {str(PurePosixPath(rel)): Path(src) for rel, src in (extra_files or {}).items()}
    sources = {f"model.{name}.onnx": spec.source for name, spec in specs.items()}
    sources[TOKENIZER] = Path(tokenizer_json)
    problems = _write_problems(specs, default_variant, labels, model_info, extras, sources)
    if problems:
        raise BundleError(out, problems, hint="Fix the arguments of the export step; nothing was written.")
    sources.update(extras)
    _prepare_folder(out, overwrite, new_files=set(sources), keep={p.resolve() for p in sources.values()})

    files: dict[str, dict[str, Any]] = {}
    for rel, src in sources.items():
        files[rel] = _copy_and_hash(src, out / rel)
    generated = {
        PREPROCESS: {"text": text_config.to_dict(), "image": image_config.to_dict()},
        LABELS: list(labels),
    }
    for rel, payload in generated.items():
        files[rel] = _write_and_hash(out / rel, _dumps(payload))

    made = provenance(command)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": made["created"],
        "command": made["command"],
        "git_commit": made["git_commit"],
        "git_dirty": made.get("git_dirty"),
        "packages": made["environment"]["packages"],
        "files": dict(sorted(files.items())),
        "variants": {
            name: {
                "file": f"model.{name}.onnx",
                "precision": spec.precision,
                "quantization": spec.quantization,
                "intended": spec.intended,
                "metrics": spec.metrics,
            }
            for name, spec in specs.items()
        },
        "default_variant": default_variant,
        "inputs": list(inputs),
        "outputs": list(outputs),
        "model": dict(model_info),
    }
    _write_manifest(out, manifest)
    return out


def _as_spec(out: Path, name: str, value: VariantLike) -> VariantSpec:
    if isinstance(value, VariantSpec):
        return value
    if isinstance(value, (str, bytes, Path)) or not isinstance(value, Sequence) or len(value) not in (4, 5):
        raise BundleError(out, f"variant {name!r}: expected a VariantSpec or (source_path, precision, "
                               f"quantization, intended[, metrics]), got {value!r}", hint=None)
    return VariantSpec(*value)


def _write_problems(specs: dict[str, VariantSpec], default_variant: str, labels: Sequence[str],
                    model_info: Mapping[str, Any], extras: dict[str, Path], sources: dict[str, Path]) -> list[str]:
    problems: list[str] = []
    if not specs:
        problems.append("variants: at least one model variant is needed")
    for name, spec in specs.items():
        problems += _variant_problems(name, {"precision": spec.precision, "quantization": spec.quantization,
                                             "intended": spec.intended, "metrics": spec.metrics})
        try:
            _dumps(spec.metrics)
        except (TypeError, ValueError) as exc:
            problems.append(f"variant {name!r}: metrics are not plain JSON ({exc}); use numbers, strings or null")
    if specs and default_variant not in specs:
        problems.append(f"default_variant {default_variant!r} is not one of the variants: {', '.join(specs)}")
    problems += [f"labels: {p}" for p in _label_problems(labels)]
    try:
        _dumps(dict(model_info))
    except (TypeError, ValueError) as exc:
        problems.append(f"model_info: not plain JSON ({exc})")
    reserved = {MANIFEST, PREPROCESS, LABELS, *sources}
    for rel in extras:
        if not _safe_relative(rel):
            problems.append(f"extra file {rel!r}: must be a relative path inside the bundle")
        elif rel in reserved:
            problems.append(f"extra file {rel!r}: that name is reserved for the bundle's own file")
    for rel, src in {**sources, **extras}.items():
        if not src.is_file():
            problems.append(f"{rel}: source file {src} not found")
    return problems


def _prepare_folder(out: Path, overwrite: bool, new_files: set[str], keep: set[Path]) -> None:
    """Make `out` ready to write into, without ever leaving a stale manifest.

    With `overwrite`, only what a bundle writer puts there is removed (the old manifest, the files
    it lists, `model.*.onnx`, the required files), so a mistaken `--out` cannot wipe a folder;
    `keep` are sources that live inside it. Another `*.onnx` left there would make the new bundle
    fail its check, so it is refused before anything is touched.
    """
    if out.exists() and not out.is_dir():
        raise BundleError(out, "the path exists and is a file, not a folder", hint="Choose another output folder.")
    if not out.is_dir() or not any(out.iterdir()):
        out.mkdir(parents=True, exist_ok=True)
        return
    if not overwrite:
        raise BundleError(out, "the folder exists and is not empty",
                          hint="Pass overwrite=True (--overwrite) to replace it, or choose another folder.")
    old = _read_json(out / MANIFEST) if (out / MANIFEST).is_file() else None
    listed = old.get("files") if isinstance(old, dict) and isinstance(old.get("files"), dict) else {}
    doomed = {out / rel for rel in listed if isinstance(rel, str) and _safe_relative(rel)}
    doomed |= set(out.glob("model.*.onnx")) | {out / name for name in REQUIRED_FILES}
    doomed = {path for path in doomed if path.is_file() and path.resolve() not in keep}
    strays = [path.relative_to(out).as_posix() for path in sorted(out.rglob("*.onnx"))
              if path not in doomed and path.relative_to(out).as_posix() not in new_files]
    if strays:
        raise BundleError(out, [f"{rel}: an ONNX file that is not part of the new bundle" for rel in strays],
                          hint="Move it out of the folder (the bundle would refuse it), or choose another folder.")
    (out / MANIFEST).unlink(missing_ok=True)  # first: from here on the folder is not a bundle
    for path in doomed:
        path.unlink()


def _copy_and_hash(src: Path, dst: Path) -> dict[str, Any]:
    """Copy `src` to `dst` (hashing as it goes) and flush it to disk; hash in place if they are one file."""
    if dst.exists() and os.path.samefile(src, dst):
        return {"sha256": hash_file(dst), "bytes": dst.stat().st_size}
    dst.parent.mkdir(parents=True, exist_ok=True)
    digest, size = hashlib.sha256(), 0
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while chunk := fin.read(_CHUNK):
            digest.update(chunk)
            fout.write(chunk)
            size += len(chunk)
        fout.flush()
        os.fsync(fout.fileno())  # the manifest must never reach the disk before the files it vouches for
    return {"sha256": digest.hexdigest(), "bytes": size}


def _write_and_hash(dst: Path, data: bytes) -> dict[str, Any]:
    with open(dst, "wb") as fout:
        fout.write(data)
        fout.flush()
        os.fsync(fout.fileno())
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def _write_manifest(folder: Path, manifest: Mapping[str, Any]) -> None:
    """Write `manifest.json` atomically: readers see the old one or the new one, never half."""
    atomic_write(folder / MANIFEST, _dumps(manifest))


def _dumps(payload: Any) -> bytes:
    # Strict JSON (no NaN): the manifest is read by other tools too. numpy scalars become numbers.
    text = json.dumps(payload, indent=2, ensure_ascii=False, allow_nan=False, default=_plain)
    return (text + "\n").encode("utf-8")


def _plain(value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


# ----------------------------------------------------------------------------- checking and loading


def hash_file(path: str | Path) -> str:
    """sha256 hex digest of a file, read in chunks (ONNX files can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fin:
        while chunk := fin.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class _Inspection:
    """What `_inspect` found: the problems and whatever parsed cleanly on the way."""

    problems: list[str] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)
    manifest_sha256: str = ""
    text_config: TextConfig | None = None
    image_config: ImageConfig | None = None
    labels: tuple[str, ...] = ()
    variants: dict[str, Variant] = field(default_factory=dict)


def verify_bundle(path: str | Path, *, hashes: bool = True) -> list[str]:
    """Every problem with the bundle at `path` (empty when it is sound), one line each, naming the
    file or manifest field. `hashes=False` skips the sha256 checks (sizes are still compared)."""
    return _inspect(Path(path), hashes).problems


def load_bundle(path: str | Path, *, verify: bool = True) -> Bundle:
    """Load and check the bundle at `path`; a `BundleError` listing every problem otherwise.

    `verify=False` skips hashing the files (for quick listings); existence, sizes, labels and the
    preprocessing config are checked either way.
    """
    path = Path(path)
    found = _inspect(path, verify)
    if found.problems:
        raise BundleError(path, found.problems)
    assert found.text_config is not None and found.image_config is not None
    return Bundle(path, found.manifest, found.text_config, found.image_config, found.labels,
                  found.variants, found.manifest["default_variant"], found.manifest_sha256)


def update_metrics(path: str | Path, variant: str, metrics: Mapping[str, Any], *, replace: bool = False) -> dict[str, Any]:
    """Record measured `metrics` for `variant` in the bundle's manifest; returns the variant's metrics.

    The new numbers are merged over the old ones (`replace=True` drops the old ones). Only the
    manifest is rewritten (atomically); model files are not re-hashed here, since whoever measured
    the numbers loaded the bundle with `load_bundle`, which did. Two concurrent updates of one
    bundle may lose one of them.
    """
    def update(spec: dict[str, Any]) -> dict[str, Any]:
        old = spec.get("metrics")
        merged = dict(metrics) if replace or not isinstance(old, dict) else {**old, **metrics}
        _check_plain(path, variant, merged)
        spec["metrics"] = merged
        return merged

    return _edit_variant(path, variant, update)


def set_temperature(path: str | Path, variant: str, temperature: float, evidence: Mapping[str, Any]) -> None:
    """Give `variant` a softmax temperature (see the module's rules), and record how it was found
    (`evidence`: data, counts, scores before and after) as its metrics' `calibration`. Only the
    manifest is rewritten, as by `update_metrics`; the bundle gets a new hash."""
    if not _is_temperature(temperature):
        raise BundleError(path, f"variant {variant!r}: temperature must be a positive number, got {temperature!r}",
                          hint=None)

    def update(spec: dict[str, Any]) -> None:
        metrics = dict(spec.get("metrics") or {})
        metrics["calibration"] = {"temperature": float(temperature), **evidence}
        _check_plain(path, variant, metrics)
        spec["temperature"] = float(temperature)
        spec["metrics"] = metrics

    _edit_variant(path, variant, update)


def _edit_variant(path: str | Path, variant: str, update: Callable[[dict[str, Any]], Any]) -> Any:
    """Apply `update` to `variant`'s entry of the manifest and write the manifest back (atomically)."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(path, f"{MANIFEST}: missing, so there is nothing to update")
    manifest = _read_json(manifest_path)
    problems = _header_problems(manifest)
    if problems:
        raise BundleError(path, problems)
    variants = manifest.get("variants")
    if not isinstance(variants, dict) or not isinstance(variants.get(variant), dict):
        available = ", ".join(variants) if isinstance(variants, dict) else "none"
        raise BundleError(path, f"{MANIFEST}: no variant {variant!r} to update; available: {available}",
                          hint="Choose one of the available variants.")
    result = update(variants[variant])
    _write_manifest(path, manifest)
    return result


def _is_temperature(value: Any) -> bool:
    """A finite positive number (not a bool): what a variant's softmax temperature must be."""
    return (not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
            and value > 0)


def _check_plain(path: str | Path, variant: str, metrics: Mapping[str, Any]) -> None:
    try:
        _dumps(metrics)
    except (TypeError, ValueError) as exc:
        raise BundleError(path, f"variant {variant!r}: metrics are not plain JSON ({exc})",
                          hint="Use numbers, strings or null (not NaN).") from None


def _read_json(path: Path) -> Any:
    """Parsed JSON, or a `_BadJson` carrying the reason (so callers can report, not crash)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return _BadJson(str(exc))


@dataclass(frozen=True)
class _BadJson:
    reason: str


def _header_problems(manifest: Any) -> list[str]:
    """Is this a CrisisLens bundle manifest this code can read? (checked before anything else)"""
    if isinstance(manifest, _BadJson):
        return [f"{MANIFEST}: not readable JSON ({manifest.reason})"]
    if not isinstance(manifest, dict):
        return [f"{MANIFEST}: must be a JSON object, got {type(manifest).__name__}"]
    if manifest.get("format") != FORMAT:
        return [f"{MANIFEST}: format is {manifest.get('format')!r}, expected {FORMAT!r} (not a CrisisLens bundle)"]
    version = manifest.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int):
        return [f"{MANIFEST}: format_version must be an integer, got {version!r}"]
    if version > FORMAT_VERSION:
        return [f"{MANIFEST}: format_version {version} is newer than this CrisisLens reads ({FORMAT_VERSION}); "
                "upgrade crisislens or rebuild the bundle"]
    if version != FORMAT_VERSION:
        return [f"{MANIFEST}: format_version {version} is no longer supported (this CrisisLens reads {FORMAT_VERSION})"]
    return []


def _inspect(path: Path, hashes: bool) -> _Inspection:
    found = _Inspection()
    problems = found.problems
    if not path.is_dir():
        problems.append("the folder does not exist" if not path.exists() else "not a folder")
        return found
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        problems.append(f"{MANIFEST}: missing: the bundle was never finished (writing was interrupted) "
                        "or this is not a bundle folder")
        return found
    raw = manifest_path.read_bytes()
    found.manifest_sha256 = hashlib.sha256(raw).hexdigest()
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        manifest = _BadJson(str(exc))
    problems += _header_problems(manifest)
    if problems:
        return found
    found.manifest = manifest

    files = manifest.get("files")
    if not isinstance(files, dict):
        problems.append(f"{MANIFEST}: `files` must be an object of {{path: {{sha256, bytes}}}}")
        files = {}
    intact: set[str] = set()  # listed files that are present and match
    for rel, entry in files.items():
        problem = _file_problem(path, rel, entry, hashes)
        if problem:
            problems.append(problem)
        else:
            intact.add(rel)
    for rel in REQUIRED_FILES:
        if rel not in files:
            problems.append(f"{rel}: required file not listed in {MANIFEST}")
    for onnx in sorted(path.rglob("*.onnx")):
        rel = onnx.relative_to(path).as_posix()
        if rel not in files:
            problems.append(f"{rel}: model file not listed in {MANIFEST} (added after the bundle was built, "
                            "or left by an interrupted rebuild); remove it or rebuild")

    found.variants = _load_variants(path, manifest, files, intact, problems)
    # A file that failed its check is not parsed: its content is not what the manifest vouches for.
    if LABELS in intact:
        found.labels = _load_labels(path, problems)
    if PREPROCESS in intact:
        found.text_config, found.image_config = _load_preprocess(path, problems)
    if not isinstance(manifest.get("model", {}), dict):
        problems.append(f"{MANIFEST}: `model` must be an object")
    return found


def _file_problem(folder: Path, rel: Any, entry: Any, hashes: bool) -> str | None:
    if not isinstance(rel, str) or not _safe_relative(rel) or rel == MANIFEST:
        return f"{MANIFEST}: files: {rel!r} is not a relative path inside the bundle"
    if (not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str)
            or not _SHA256.fullmatch(entry["sha256"]) or isinstance(entry.get("bytes"), bool)
            or not isinstance(entry.get("bytes"), int)):
        return f"{MANIFEST}: files: {rel}: needs a 64-hex-digit sha256 and an integer bytes"
    target = folder / rel
    if not target.is_file():
        return f"{rel}: listed in {MANIFEST} but missing from the folder"
    size = target.stat().st_size
    if size != entry["bytes"]:
        return (f"{rel}: size mismatch (manifest {entry['bytes']} bytes, file {size} bytes): "
                "the bundle was modified, truncated or corrupted")
    if hashes:
        actual = hash_file(target)
        if actual != entry["sha256"]:
            return (f"{rel}: sha256 mismatch (manifest {entry['sha256'][:12]}…, file {actual[:12]}…): "
                    "the bundle was modified or corrupted")
    return None


def _variant_problems(name: Any, spec: Any) -> list[str]:
    """Problems with one variant's description; shared by writing and loading."""
    if not isinstance(name, str) or not _VARIANT_NAME.fullmatch(name):
        return [f"variant {name!r}: names are lower-case letters, digits, '-' and '_' (e.g. int8-qdq)"]
    if not isinstance(spec, dict):
        return [f"variant {name!r}: must be an object"]
    where = f"variant {name!r}"
    problems = []
    precision, quantization = spec.get("precision"), spec.get("quantization")
    if precision not in PRECISIONS:
        problems.append(f"{where}: precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if quantization not in QUANTIZATIONS:
        problems.append(f"{where}: quantization {quantization!r} is not one of "
                        f"{', '.join(str(q) if q else 'null' for q in QUANTIZATIONS)}")
    elif precision == "int8" and quantization is None:
        problems.append(f"{where}: an int8 model needs quantization 'dynamic', 'weight-only' or 'static-qdq'")
    elif precision in ("fp32", "fp16") and quantization is not None:
        problems.append(f"{where}: a {precision} model has quantization null, not {quantization!r}")
    if spec.get("intended") not in INTENDED:
        problems.append(f"{where}: intended {spec.get('intended')!r} is not one of {', '.join(INTENDED)}")
    if not isinstance(spec.get("metrics", {}), dict):
        problems.append(f"{where}: metrics must be an object")
    temperature = spec.get("temperature", 1.0)
    if not _is_temperature(temperature):
        problems.append(f"{where}: temperature {temperature!r} is not a positive number")
    return problems


def _load_variants(folder: Path, manifest: dict[str, Any], files: dict[str, Any], intact: set[str],
                   problems: list[str]) -> dict[str, Variant]:
    raw = manifest.get("variants")
    if not isinstance(raw, dict) or not raw:
        problems.append(f"{MANIFEST}: `variants` must list at least one model variant")
        return {}
    variants: dict[str, Variant] = {}
    for name, spec in raw.items():
        trouble = _variant_problems(name, spec)
        rel = spec.get("file") if isinstance(spec, dict) else None
        if not trouble and (not isinstance(rel, str) or rel not in files):
            trouble.append(f"variant {name!r}: file {rel!r} is not listed under `files` in {MANIFEST}")
        problems += trouble
        if not trouble and rel in intact:  # a file that failed its check is already reported
            entry = files[rel]
            variants[name] = Variant(name, folder / rel, spec["precision"], spec["quantization"], spec["intended"],
                                     dict(spec.get("metrics", {})), entry["sha256"], entry["bytes"],
                                     float(spec.get("temperature", 1.0)))
    default = manifest.get("default_variant")
    if default not in raw:
        problems.append(f"{MANIFEST}: default_variant {default!r} is not one of the variants: {', '.join(map(str, raw))}")
    return variants


def _label_problems(labels: Any) -> list[str]:
    """Why `labels` is not exactly `LABEL_NAMES` (subset, unknown names, order); empty when it is."""
    if not isinstance(labels, (list, tuple)) or not all(isinstance(x, str) for x in labels):
        return [f"must be a list of class names, got {labels!r}"]
    if tuple(labels) == LABEL_NAMES:
        return []
    unknown = [x for x in labels if x not in LABEL_NAMES]
    missing = [x for x in LABEL_NAMES if x not in labels]
    duplicated = sorted({x for x in labels if list(labels).count(x) > 1})
    problems = []
    if unknown:
        problems.append(f"unknown class(es) {', '.join(unknown)}")
    if duplicated:
        problems.append(f"duplicated class(es) {', '.join(duplicated)}")
    if missing:
        problems.append(f"missing class(es) {', '.join(missing)} (a model trained on a subset of classes "
                        "cannot be bundled: probabilities are always over all classes)")
    if not problems:
        problems.append("the classes are in a different order; every probability column follows "
                        f"LABEL_NAMES: {', '.join(LABEL_NAMES)}")
    return problems


def _load_labels(folder: Path, problems: list[str]) -> tuple[str, ...]:
    labels = _read_json(folder / LABELS)
    if isinstance(labels, _BadJson):
        problems.append(f"{LABELS}: not readable JSON ({labels.reason})")
        return ()
    trouble = _label_problems(labels)
    problems += [f"{LABELS}: {p}" for p in trouble]
    return () if trouble else tuple(labels)


def _load_preprocess(folder: Path, problems: list[str]) -> tuple[TextConfig | None, ImageConfig | None]:
    data = _read_json(folder / PREPROCESS)
    if isinstance(data, _BadJson):
        problems.append(f"{PREPROCESS}: not readable JSON ({data.reason})")
        return None, None
    if not isinstance(data, dict):
        problems.append(f"{PREPROCESS}: must be an object with `text` and `image`")
        return None, None
    configs: list[Any] = []
    for key, cls in (("text", TextConfig), ("image", ImageConfig)):
        try:
            configs.append(cls.from_dict(data.get(key)))
        except (TypeError, ValueError) as exc:
            problems.append(f"{PREPROCESS}: {key}: {exc}")
            configs.append(None)
    return configs[0], configs[1]


def _safe_relative(rel: str) -> bool:
    """A path that stays inside the bundle: relative, no '..', posix separators."""
    pure = PurePosixPath(rel)
    return bool(rel) and "\\" not in rel and not pure.is_absolute() and ".." not in pure.parts and pure.parts != (".",)
