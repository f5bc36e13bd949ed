"""What the runtime needs to choose and trust a TensorRT engine, without building one: optimisation
profiles and `select_profile`, the GPU's identity, the JSON sidecar written beside every cached
engine, and the check that an engine was built for this GPU, this TensorRT and this ONNX model.

A serialised engine only loads on the TensorRT version and GPU generation that built it, and only
accepts the shapes of its optimisation profiles. `crisislens.export.tensorrt` builds engines and
writes them with their sidecars; the runtime's `TensorRTBackend` reads them back through this
module, so both sides share one definition of the cache. An engine whose sidecar does not match is
never loaded: the `EngineMismatch` message names the differing field ("built for TensorRT 10.3.0 on
Orin (sm_87) ..., this is TensorRT 10.7.0 on ...").

`tensorrt` and `cuda-python` are imported inside functions only, so everything here works (and is
tested) on machines without them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crisislens.runtime.backends.profiles import ProfileSpec
from crisislens.runtime.errors import CrisisLensError

DEFAULT_STEM = "student"
SIDECAR_FORMAT = 1
KEY_LENGTH = 16  # hex digits of the sha256: collisions are not a concern among a folder's engines


class SidecarError(CrisisLensError, ValueError):
    """An engine's JSON sidecar is missing fields or is not JSON."""


class EngineMismatch(CrisisLensError):
    """No usable cached engine: `differing` names the fields that changed (empty when the cache
    is empty, or the engine or its sidecar is missing or corrupt); the message says what."""

    def __init__(self, message: str, differing: Sequence[str] = ()):
        super().__init__(message)
        self.differing: tuple[str, ...] = tuple(differing)


FIELD_LABELS: dict[str, str] = {
    "onnx_sha256": "ONNX model",
    "tensorrt_version": "TensorRT version",
    "gpu_name": "GPU",
    "compute_capability": "compute capability",
    "precision": "precision",
    "profiles": "optimisation profiles",
}


@dataclass(frozen=True)
class EngineTarget:
    """What an engine must have been built for to run here: this ONNX model at this precision,
    with this TensorRT on this GPU. (Its profiles only decide which shapes it accepts.)"""

    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "onnx_sha256": self.onnx_sha256,
            "tensorrt_version": self.tensorrt_version,
            "gpu_name": self.gpu_name,
            "compute_capability": self.compute_capability,
            "precision": self.precision,
        }

    def describe(self) -> str:
        sm = "sm_" + self.compute_capability.replace(".", "")
        return (
            f"TensorRT {self.tensorrt_version} on {self.gpu_name} ({sm}), {self.precision}, "
            f"ONNX {self.onnx_sha256[:12]}"
        )


@dataclass(frozen=True)
class EngineFields:
    """Everything a built engine depends on; its hash is the engine's cache key.

    (The ONNX hash covers the .onnx file only: the student has no external-data weights.)
    """

    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    profiles: tuple[ProfileSpec, ...] = field(hash=False)

    @property
    def target(self) -> EngineTarget:
        return EngineTarget(
            self.onnx_sha256, self.tensorrt_version, self.gpu_name, self.compute_capability, self.precision
        )

    def to_dict(self) -> dict[str, Any]:
        return {**self.target.to_dict(), "profiles": [p.to_dict() for p in self.profiles]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EngineFields:
        return cls(
            str(data["onnx_sha256"]),
            str(data["tensorrt_version"]),
            str(data["gpu_name"]),
            str(data["compute_capability"]),
            str(data["precision"]),
            tuple(ProfileSpec.from_dict(p) for p in data["profiles"]),
        )

    @property
    def key(self) -> str:
        """Deterministic short key: sha256 of the canonical JSON of the fields."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:KEY_LENGTH]

    def describe(self) -> str:
        batches = ",".join(str(p.batch[2]) for p in self.profiles)
        seq = max((p.seq[2] for p in self.profiles), default=0)
        return f"{self.target.describe()}, profiles batch<={batches} seq<={seq}"


def engine_filename(key: str, stem: str = DEFAULT_STEM) -> str:
    return f"{stem}.{key}.engine"


def sidecar_path(engine_path: Path) -> Path:
    """The JSON sidecar beside an engine: `student.<key>.engine.json`."""
    return engine_path.with_name(engine_path.name + ".json")


@dataclass(frozen=True)
class EngineSidecar:
    """What the JSON beside an engine records: the key fields plus how and when it was built."""

    key: str
    engine: str  # file name, relative to the sidecar's folder
    fields: EngineFields
    engine_bytes: int
    engine_sha256: str
    built_at: str
    build_seconds: float
    workspace_gb: float
    format: int = SIDECAR_FORMAT

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "key": self.key,
            "engine": self.engine,
            "fields": self.fields.to_dict(),
            "engine_bytes": self.engine_bytes,
            "engine_sha256": self.engine_sha256,
            "built_at": self.built_at,
            "build_seconds": self.build_seconds,
            "workspace_gb": self.workspace_gb,
        }


def read_sidecar(path: Path) -> EngineSidecar:
    """The sidecar at `path`, or `SidecarError` naming the file and what is wrong with it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SidecarError(f"{path}: cannot read the engine sidecar ({exc.strerror or exc})") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SidecarError(f"{path}: the engine sidecar is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise SidecarError(f"{path}: the engine sidecar is not a JSON object")
    if data.get("format") != SIDECAR_FORMAT:
        raise SidecarError(f"{path}: sidecar format {data.get('format')!r}, this CrisisLens reads {SIDECAR_FORMAT}")
    try:
        return EngineSidecar(
            key=str(data["key"]),
            engine=str(data["engine"]),
            fields=EngineFields.from_dict(data["fields"]),
            engine_bytes=int(data["engine_bytes"]),
            engine_sha256=str(data["engine_sha256"]),
            built_at=str(data["built_at"]),
            build_seconds=float(data["build_seconds"]),
            workspace_gb=float(data["workspace_gb"]),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        missing = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
        raise SidecarError(f"{path}: the engine sidecar is incomplete or malformed ({missing})") from exc


def differing_fields(built: EngineFields, current: EngineFields | EngineTarget) -> list[str]:
    """Names of the fields that differ between an engine's sidecar and this machine (the profiles
    only when `current` has them)."""
    a, b = built.to_dict(), current.to_dict()
    return [name for name in FIELD_LABELS if name in b and a[name] != b[name]]


def mismatch_message(engine_name: str, built: EngineFields, current: EngineFields | EngineTarget) -> str:
    names = differing_fields(built, current)
    labels = ", ".join(FIELD_LABELS[n] for n in names) or "nothing (key mismatch)"
    return f"{engine_name} was built for {built.describe()}; this is {current.describe()} (differs in: {labels})"


def engine_file_problem(engine: Path, record: EngineSidecar) -> str | None:
    """What is wrong with the engine file a sound sidecar describes (missing, other size), or None."""
    if not engine.is_file():
        return f"{engine}: the engine file is missing beside its sidecar"
    size = engine.stat().st_size
    if size != record.engine_bytes:
        return f"{engine}: {size} bytes, the sidecar records {record.engine_bytes} (truncated or replaced)"
    return None


def _sidecars(cache_dir: Path, stem: str) -> list[tuple[Path, EngineSidecar]]:
    """Every readable sidecar in `cache_dir`, newest first; corrupt ones are passed over."""
    found = []
    for path in cache_dir.glob(f"{stem}.*.engine.json"):
        try:
            found.append((path.stat().st_mtime, path.name, path, read_sidecar(path)))
        except (OSError, SidecarError):
            continue  # a corrupt stranger says nothing about the engine wanted
    found.sort(key=lambda t: (t[0], t[1]), reverse=True)
    return [(path, record) for _, _, path, record in found]


def _closest_mismatch(
    cache_dir: Path, others: Sequence[tuple[Path, EngineSidecar]], current: EngineFields | EngineTarget, stem: str
) -> EngineMismatch:
    """The error for a cache without the wanted engine: compared with the engine that differs in
    the fewest fields (the newest among those), naming what changed."""
    if not others:
        return EngineMismatch(f"no cached {stem} engine in {cache_dir}")
    _, closest = min(others, key=lambda o: len(differing_fields(o[1].fields, current)))  # stable: newest wins ties
    return EngineMismatch(
        mismatch_message(closest.engine, closest.fields, current), differing_fields(closest.fields, current)
    )


def find_cached_engine(cache_dir: str | Path, fields: EngineFields, stem: str = DEFAULT_STEM) -> Path:
    """The cached engine for exactly `fields` (the builder's lookup), or `EngineMismatch` saying
    why there is none.

    The engine is used only when its sidecar exists, parses, records exactly these fields and
    the engine file has the recorded size. Otherwise the message compares with the closest other
    engine in the folder, naming which field changed (TensorRT upgrade, other GPU, new ONNX ...).
    """
    cache_dir = Path(cache_dir)
    engine = cache_dir / engine_filename(fields.key, stem)
    sidecar = sidecar_path(engine)
    if sidecar.is_file():
        try:
            record = read_sidecar(sidecar)
        except SidecarError as exc:
            raise EngineMismatch(f"{exc}; rebuilding") from exc
        if record.fields != fields:
            raise EngineMismatch(
                mismatch_message(engine.name, record.fields, fields), differing_fields(record.fields, fields)
            )
        problem = engine_file_problem(engine, record)
        if problem:
            raise EngineMismatch(f"{problem}; rebuilding")
        return engine
    if engine.is_file():
        raise EngineMismatch(
            f"{engine}: no sidecar metadata beside it (interrupted build or a copied file); rebuilding"
        )
    raise _closest_mismatch(cache_dir, _sidecars(cache_dir, stem), fields, stem)


def find_engine_for(
    cache_dir: str | Path, target: EngineTarget, stem: str = DEFAULT_STEM
) -> tuple[Path, EngineSidecar]:
    """The newest cached engine built for `target`, whatever its profiles (the runtime's lookup),
    with its sidecar; or `EngineMismatch` saying why none can run here.

    An engine without a readable sidecar is never a candidate: nothing then says what it was built for.
    """
    cache_dir = Path(cache_dir)
    records = _sidecars(cache_dir, stem)
    problems = []
    for sidecar, record in records:
        if record.fields.target != target:
            continue
        engine = sidecar.with_name(sidecar.name.removesuffix(".json"))
        problem = engine_file_problem(engine, record)
        if problem is None:
            return engine, record
        problems.append(problem)
    if problems:
        raise EngineMismatch(f"{problems[0]}; rebuild it with `crisislens export tensorrt`")
    raise _closest_mismatch(cache_dir, records, target, stem)
