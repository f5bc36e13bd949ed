"""Writing a bundle (`write_bundle`) and editing its manifest in place (`update_metrics`,
`set_temperature`): files first, `manifest.json` last and atomically.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from crisislens.runtime.bundle.manifest import (
    _CHUNK,
    FORMAT,
    FORMAT_VERSION,
    LABELS,
    MANIFEST,
    PREPROCESS,
    REQUIRED_FILES,
    TOKENIZER,
    BundleError,
    VariantLike,
    VariantSpec,
    _dumps,
    _header_problems,
    _is_temperature,
    _label_problems,
    _read_json,
    _safe_relative,
    _variant_problems,
    hash_file,
)
from crisislens.runtime.files import atomic_write
from crisislens.runtime.labels import LABEL_NAMES
from crisislens.runtime.preprocessing import ImageConfig, TextConfig


def provenance(command: str) -> dict[str, Any]:
    """`runtime.reports.provenance`, imported when a bundle is written: it reads the installed
    packages' metadata, which a run that only loads a bundle need not import at its start."""
    from crisislens.runtime.reports import provenance as made

    return made(command)


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
        raise BundleError(
            out,
            f"variant {name!r}: expected a VariantSpec or (source_path, precision, "
            f"quantization, intended[, metrics]), got {value!r}",
            hint=None,
        )
    return VariantSpec(*value)


def _write_problems(
    specs: dict[str, VariantSpec],
    default_variant: str,
    labels: Sequence[str],
    model_info: Mapping[str, Any],
    extras: dict[str, Path],
    sources: dict[str, Path],
) -> list[str]:
    problems: list[str] = []
    if not specs:
        problems.append("variants: at least one model variant is needed")
    for name, spec in specs.items():
        problems += _variant_problems(
            name,
            {
                "precision": spec.precision,
                "quantization": spec.quantization,
                "intended": spec.intended,
                "metrics": spec.metrics,
            },
        )
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
        raise BundleError(
            out,
            "the folder exists and is not empty",
            hint="Pass overwrite=True (--overwrite) to replace it, or choose another folder.",
        )
    old = _read_json(out / MANIFEST) if (out / MANIFEST).is_file() else None
    listed: dict[str, Any] = old["files"] if isinstance(old, dict) and isinstance(old.get("files"), dict) else {}
    doomed = {out / rel for rel in listed if isinstance(rel, str) and _safe_relative(rel)}
    doomed |= set(out.glob("model.*.onnx")) | {out / name for name in REQUIRED_FILES}
    doomed = {path for path in doomed if path.is_file() and path.resolve() not in keep}
    strays = [
        path.relative_to(out).as_posix()
        for path in sorted(out.rglob("*.onnx"))
        if path not in doomed and path.relative_to(out).as_posix() not in new_files
    ]
    if strays:
        raise BundleError(
            out,
            [f"{rel}: an ONNX file that is not part of the new bundle" for rel in strays],
            hint="Move it out of the folder (the bundle would refuse it), or choose another folder.",
        )
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


def update_metrics(
    path: str | Path, variant: str, metrics: Mapping[str, Any], *, replace: bool = False
) -> dict[str, Any]:
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
        raise BundleError(
            path, f"variant {variant!r}: temperature must be a positive number, got {temperature!r}", hint=None
        )

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
        raise BundleError(
            path,
            f"{MANIFEST}: no variant {variant!r} to update; available: {available}",
            hint="Choose one of the available variants.",
        )
    result = update(variants[variant])
    _write_manifest(path, manifest)
    return result


def _check_plain(path: str | Path, variant: str, metrics: Mapping[str, Any]) -> None:
    try:
        _dumps(metrics)
    except (TypeError, ValueError) as exc:
        raise BundleError(
            path,
            f"variant {variant!r}: metrics are not plain JSON ({exc})",
            hint="Use numbers, strings or null (not NaN).",
        ) from None
