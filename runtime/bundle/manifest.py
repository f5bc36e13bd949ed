"""The bundle's manifest: its format, the loaded types (`Bundle`, `Variant`), the error, and the
rules shared by writing and reading (variant fields, labels, temperature, safe paths).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from crisislens.runtime.errors import CrisisLensError
from crisislens.runtime.labels import LABEL_NAMES
from crisislens.runtime.preprocessing import ImageConfig, TextConfig
from crisislens.runtime.variants import PRECISIONS, QUANTIZATIONS, TARGETS

FORMAT = "crisislens-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TOKENIZER = "tokenizer.json"
PREPROCESS = "preprocess.json"
LABELS = "labels.json"
REQUIRED_FILES = (TOKENIZER, PREPROCESS, LABELS)

INTENDED = TARGETS  # a variant's `intended`: where it is meant to run

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


VariantLike = VariantSpec | Sequence[Any]


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
            raise BundleError(
                self.path, f"no variant {name!r}; available: {available}", hint="Choose one of the available variants."
            ) from None


def _dumps(payload: Any) -> bytes:
    # Strict JSON (no NaN): the manifest is read by other tools too. numpy scalars become numbers.
    text = json.dumps(payload, indent=2, ensure_ascii=False, allow_nan=False, default=_plain)
    return (text + "\n").encode("utf-8")


def _plain(value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def hash_file(path: str | Path) -> str:
    """sha256 hex digest of a file, read in chunks (ONNX files can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fin:
        while chunk := fin.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _is_temperature(value: Any) -> bool:
    """A finite positive number (not a bool): what a variant's softmax temperature must be."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) and value > 0


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
        return [
            f"{MANIFEST}: format_version {version} is newer than this CrisisLens reads ({FORMAT_VERSION}); "
            "upgrade crisislens or rebuild the bundle"
        ]
    if version != FORMAT_VERSION:
        return [f"{MANIFEST}: format_version {version} is no longer supported (this CrisisLens reads {FORMAT_VERSION})"]
    return []


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
        problems.append(
            f"{where}: quantization {quantization!r} is not one of "
            f"{', '.join(str(q) if q else 'null' for q in QUANTIZATIONS)}"
        )
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
        problems.append(
            f"missing class(es) {', '.join(missing)} (a model trained on a subset of classes "
            "cannot be bundled: probabilities are always over all classes)"
        )
    if not problems:
        problems.append(
            "the classes are in a different order; every probability column follows "
            f"LABEL_NAMES: {', '.join(LABEL_NAMES)}"
        )
    return problems


def _safe_relative(rel: str) -> bool:
    """A path that stays inside the bundle: relative, no '..', posix separators."""
    pure = PurePosixPath(rel)
    return bool(rel) and "\\" not in rel and not pure.is_absolute() and ".." not in pure.parts and pure.parts != (".",)
