"""Loading and verifying a bundle: the manifest read and checked, every file's sha256 and size
compared, the variants resolved. The bundle's layout is the package's docstring: see
`crisislens.runtime.bundle`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crisislens.runtime.bundle.manifest import (
    _SHA256,
    LABELS,
    MANIFEST,
    PREPROCESS,
    REQUIRED_FILES,
    Bundle,
    BundleError,
    Variant,
    _BadJson,
    _header_problems,
    _label_problems,
    _read_json,
    _safe_relative,
    _variant_problems,
    hash_file,
)
from crisislens.runtime.preprocessing import ImageConfig, TextConfig


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


DEFAULT = ""  # `load_bundle(..., hash_for=DEFAULT)`: the variant the manifest makes the default


def load_bundle(path: str | Path, *, verify: bool = True, hash_for: str | None = None) -> Bundle:
    """Load and check the bundle at `path`; a `BundleError` listing every problem otherwise.

    `verify=False` skips hashing the files (for quick listings); existence, sizes, labels and the
    preprocessing config are checked either way. `hash_for` names the one variant a run will use
    (`DEFAULT`: the manifest's default): the other variants' model files are then only
    size-checked, not hashed, since the run never reads them (a 20 MB variant costs a one-post run
    about 16 ms of its start).
    """
    path = Path(path)
    found = _inspect(path, verify, hash_for)
    if found.problems:
        raise BundleError(path, found.problems)
    assert found.text_config is not None and found.image_config is not None
    return Bundle(
        path,
        found.manifest,
        found.text_config,
        found.image_config,
        found.labels,
        found.variants,
        found.manifest["default_variant"],
        found.manifest_sha256,
    )


def _unused_model_files(manifest: dict[str, Any], hash_for: str | None) -> set[str]:
    """The model files of the variants other than `hash_for` (none when it is None)."""
    raw = manifest.get("variants")
    if hash_for is None or not isinstance(raw, dict):
        return set()
    chosen = hash_for or manifest.get("default_variant")
    if chosen not in raw:
        return set()  # an unknown name: hash everything, the variant lookup reports it
    used = raw[chosen].get("file") if isinstance(raw[chosen], dict) else None
    return {
        spec["file"]
        for name, spec in raw.items()
        if name != chosen and isinstance(spec, dict) and isinstance(spec.get("file"), str) and spec["file"] != used
    }


def _inspect(path: Path, hashes: bool, hash_for: str | None = None) -> _Inspection:
    found = _Inspection()
    problems = found.problems
    if not path.is_dir():
        problems.append("the folder does not exist" if not path.exists() else "not a folder")
        return found
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        problems.append(
            f"{MANIFEST}: missing: the bundle was never finished (writing was interrupted) "
            "or this is not a bundle folder"
        )
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
    unused = _unused_model_files(manifest, hash_for)
    for rel, entry in files.items():
        problem = _file_problem(path, rel, entry, hashes and rel not in unused)
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
            problems.append(
                f"{rel}: model file not listed in {MANIFEST} (added after the bundle was built, "
                "or left by an interrupted rebuild); remove it or rebuild"
            )

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
    if (
        not isinstance(entry, dict)
        or not isinstance(entry.get("sha256"), str)
        or not _SHA256.fullmatch(entry["sha256"])
        or isinstance(entry.get("bytes"), bool)
        or not isinstance(entry.get("bytes"), int)
    ):
        return f"{MANIFEST}: files: {rel}: needs a 64-hex-digit sha256 and an integer bytes"
    target = folder / rel
    if not target.is_file():
        return f"{rel}: listed in {MANIFEST} but missing from the folder"
    size = target.stat().st_size
    if size != entry["bytes"]:
        return (
            f"{rel}: size mismatch (manifest {entry['bytes']} bytes, file {size} bytes): "
            "the bundle was modified, truncated or corrupted"
        )
    if hashes:
        actual = hash_file(target)
        if actual != entry["sha256"]:
            return (
                f"{rel}: sha256 mismatch (manifest {entry['sha256'][:12]}…, file {actual[:12]}…): "
                "the bundle was modified or corrupted"
            )
    return None


def _load_variants(
    folder: Path, manifest: dict[str, Any], files: dict[str, Any], intact: set[str], problems: list[str]
) -> dict[str, Variant]:
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
            variants[name] = Variant(
                name,
                folder / rel,
                spec["precision"],
                spec["quantization"],
                spec["intended"],
                dict(spec.get("metrics", {})),
                entry["sha256"],
                entry["bytes"],
                float(spec.get("temperature", 1.0)),
            )
    default = manifest.get("default_variant")
    if default not in raw:
        problems.append(
            f"{MANIFEST}: default_variant {default!r} is not one of the variants: {', '.join(map(str, raw))}"
        )
    return variants


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
            configs.append(cls.from_dict(data.get(key)))  # type: ignore[arg-type]  # from_dict checks it
        except (TypeError, ValueError) as exc:
            problems.append(f"{PREPROCESS}: {key}: {exc}")
            configs.append(None)
    return configs[0], configs[1]
