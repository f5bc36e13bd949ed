"""TensorRT engines for the ONNX student: optimisation profiles, an engine cache keyed by
everything an engine depends on, fp32 / fp16 / int8 (QDQ) builds, a timing cache, and the
equivalent `trtexec` command for Jetson users.

What the runtime also needs to pick and trust an engine (profile and sidecar types,
`select_profile`, the GPU probe, the cache lookups and their mismatch messages) lives in
`crisislens.runtime.trt_profiles`; it is re-exported here, so this module stays the one place to
import the builder's vocabulary from.

A serialised engine only loads on the TensorRT version and GPU generation that built it, and only
accepts the shapes of its optimisation profiles. So, as jetson-inference does, every engine is
cached under a key of (ONNX sha256, TensorRT version, GPU name, compute capability, precision,
profiles), with a JSON sidecar beside it recording those fields. When any of them differs the
engine is rebuilt and the reason names the field ("built for TensorRT 10.3.0 on Orin (sm_87) ...,
this is TensorRT 10.7.0 on ..."); an engine that does not match is never loaded.

Profiles: one per batch bucket, each covering batch 1..bucket and sequence 1..max_seq (see
`make_profiles` for why); `select_profile` picks the one to use for a given (batch, seq).

`tensorrt` is imported inside functions only, so profiles, keys, sidecars and the trtexec command
work on machines without it, and `build_engine` raises `TensorRTUnavailable` saying how to get it.
Written against TensorRT 10.x; 8.6 works too (the explicit-batch network flag is the difference).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shlex
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crisislens.runtime.errors import CrisisLensError
from crisislens.runtime.bundle import hash_file
from crisislens.runtime import signature as S
from crisislens.runtime.files import atomic_write
from crisislens.export.graph_info import onnx_has_qdq, onnx_image_size, onnx_patch_count  # re-exported: the builder reads them
from crisislens.runtime.preprocessing import ImageConfig, TextConfig
from crisislens.runtime.backends.engines import DEFAULT_STEM, FIELD_LABELS, EngineFields, EngineMismatch, EngineSidecar, SidecarError, differing_fields, engine_filename, find_cached_engine, mismatch_message, read_sidecar, sidecar_path
from crisislens.runtime.backends.gpu import GpuInfo, GpuProbeError, TensorRTUnavailable, capturing_logger, import_tensorrt, parse_nvidia_smi, probe_gpu
from crisislens.runtime.backends.profiles import NoProfileFits, ProfileSpec, ShapeRange, check_positive, select_profile

# ----------------------------------------------------------------------------- the model's inputs

BATCH, SEQ, IMAGE = "batch", "seq", "image"  # symbolic axes of `InputLayout`


@dataclass(frozen=True)
class InputLayout:
    """One ONNX input and its axes: `BATCH`, `SEQ`, `IMAGE` (the image side) or a fixed size.

    Profiles are computed from these layouts, so an input renamed at export changes one line here.
    """

    name: str
    axes: tuple[str | int, ...]

    def shape(self, batch: int, seq: int, image_size: int) -> tuple[int, ...]:
        sizes = {BATCH: batch, SEQ: seq, IMAGE: image_size}
        dims = []
        for axis in self.axes:
            if isinstance(axis, int):
                dims.append(axis)
            elif axis in sizes:
                dims.append(sizes[axis])
            else:
                raise ValueError(f"input {self.name!r}: unknown axis {axis!r} "
                                 f"(use an int, {BATCH!r}, {SEQ!r} or {IMAGE!r})")
        return tuple(dims)


# The student's ONNX signature (`crisislens.runtime.signature`), in the builder's axes: the
# photos' axis is sized like the batch (a batch has at most one photo per post).
_AXES: dict[str | int, str | int] = {S.BATCH: BATCH, S.SEQ: SEQ, S.IMAGES: BATCH, S.IMAGE: IMAGE}
# The inputs every student graph takes; `patch_keep` [batch, patches] only graphs exported with it
# (`student_inputs` adds it with the graph's own patch count).
STUDENT_INPUTS: tuple[InputLayout, ...] = tuple(InputLayout(t.name, tuple(_AXES.get(a, a) for a in t.axes))
                                                for t in S.INPUTS if t.name in S.REQUIRED_INPUT_NAMES)
STUDENT_OUTPUTS: tuple[str, ...] = S.OUTPUT_NAMES

DEFAULT_BATCH_BUCKETS: tuple[int, ...] = (1, 8, 32)
DEFAULT_SEQ_BUCKETS: tuple[int, ...] = (16, 32, 64)
DEFAULT_MAX_SEQ: int = TextConfig().max_length
DEFAULT_IMAGE_SIZE: int = ImageConfig().size
DEFAULT_WORKSPACE_GB: float = 2.0  # fits beside the model on an 8 GB Jetson Orin Nano
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")

# ----------------------------------------------------------------------------- errors


class EngineBuildError(CrisisLensError, RuntimeError):
    """TensorRT could not parse the ONNX model or build the engine."""


# ----------------------------------------------------------------------------- precision


def validate_precision(precision: str) -> str:
    """The precision, lower-cased, or a ValueError listing the valid ones."""
    if not isinstance(precision, str) or precision.lower() not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of: {', '.join(PRECISIONS)}")
    return precision.lower()


def precision_flags(precision: str, has_qdq: bool) -> tuple[str, ...]:
    """The `trt.BuilderFlag` names to set for `precision` on a model with or without Q/DQ nodes.

    TensorRT 10 does int8 by explicit quantisation only: the scales come from the Q/DQ nodes of
    a quantised ONNX model, no calibrator. INT8 is set with FP16 so the layers the quantiser left
    unquantised run in fp16 rather than fp32. A Q/DQ model built as fp32/fp16, or a plain model
    built as int8, is refused: either would not be the model that was asked for.
    """
    precision = validate_precision(precision)
    if precision == "int8":
        if not has_qdq:
            raise ValueError("int8 needs an explicitly quantised (QDQ) ONNX model and this one has no "
                             "QuantizeLinear/DequantizeLinear nodes: quantise it first, or build fp16")
        return ("INT8", "FP16")
    if has_qdq:
        raise ValueError(f"this ONNX model is quantised (it has Q/DQ nodes): build it as int8, not {precision}")
    return ("FP16",) if precision == "fp16" else ()


def student_inputs(onnx_path: str | Path) -> tuple[InputLayout, ...]:
    """The input layouts of the graph at `onnx_path`: `STUDENT_INPUTS`, plus `patch_keep`
    [batch, M] when the graph takes it."""
    try:
        patches = onnx_patch_count(onnx_path)
    except Exception:  # no `onnx`, or a graph it cannot parse: TensorRT's parser will say what is wrong
        patches = None
    if patches is None:
        return STUDENT_INPUTS
    return (*STUDENT_INPUTS, InputLayout(S.PATCH_KEEP, (BATCH, patches)))


def profile_image_size(onnx_path: str | Path) -> int:
    """The photo side profiles for `onnx_path` should use: the graph's own, else 224 px."""
    try:
        size = onnx_image_size(onnx_path)
    except Exception:  # no `onnx`, or a graph it cannot parse: TensorRT's parser will say what is wrong
        size = None
    return size or DEFAULT_IMAGE_SIZE


def _profiles_for(onnx_path: Path) -> list[ProfileSpec]:
    """The default profiles, at the photo size of the graph in `onnx_path`."""
    return make_profiles(image_size=profile_image_size(onnx_path), inputs=student_inputs(onnx_path))


# ----------------------------------------------------------------------------- optimisation profiles

def _check_buckets(what: str, buckets: Sequence[int], limit: int | None = None) -> tuple[int, ...]:
    values = tuple(buckets)
    if not values:
        raise ValueError(f"{what} buckets are empty: give at least one size")
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, int) or v < 1]
    if bad:
        raise ValueError(f"{what} buckets must be positive integers, got {bad} in {values}")
    if any(a >= b for a, b in zip(values, values[1:])):
        raise ValueError(f"{what} buckets must be strictly increasing, got {values}")
    if limit is not None and values[-1] > limit:
        raise ValueError(f"{what} bucket {values[-1]} exceeds the maximum sequence length {limit}")
    return values


def make_profiles(
    batch_buckets: Sequence[int] = DEFAULT_BATCH_BUCKETS,
    seq_buckets: Sequence[int] = DEFAULT_SEQ_BUCKETS,
    max_seq: int = DEFAULT_MAX_SEQ,
    image_size: int = DEFAULT_IMAGE_SIZE,
    *,
    opt_seq: int | None = None,
    inputs: Sequence[InputLayout] = STUDENT_INPUTS,
) -> list[ProfileSpec]:
    """One optimisation profile per batch bucket: batch 1..bucket (opt = bucket), seq 1..max_seq
    (opt = `opt_seq`, by default the middle sequence bucket: a typical tweet's length).

    Why per batch bucket and not per (batch, seq) bucket: the runtime pads a batch to its longest
    text, so any length up to `max_seq` must run, and at <= 64 tokens the text tower's cost varies
    little with length next to the fixed-size image tower; batch size is what changes kernel
    choice. Three profiles build three times faster than nine and switch less at run time. Every
    profile starts at batch 1, so each is usable alone (trtexec takes the largest) and a context
    may keep its profile for smaller batches.
    """
    batches = _check_buckets("batch", batch_buckets)
    check_positive("max_seq", max_seq)
    seqs = _check_buckets("sequence", seq_buckets, limit=max_seq)
    check_positive("image_size", image_size)
    if opt_seq is None:
        opt_seq = seqs[(len(seqs) - 1) // 2]
    check_positive("opt_seq", opt_seq)
    if opt_seq > max_seq:
        raise ValueError(f"opt_seq {opt_seq} exceeds the maximum sequence length {max_seq}")
    if not inputs:
        raise ValueError("no inputs to make profiles for")
    profiles = []
    for b in batches:
        batch, seq = (1, b, b), (1, opt_seq, max_seq)
        shapes = {
            layout.name: ShapeRange(layout.shape(batch[0], seq[0], image_size),
                                    layout.shape(batch[1], seq[1], image_size),
                                    layout.shape(batch[2], seq[2], image_size))
            for layout in inputs
        }
        profiles.append(ProfileSpec(batch, seq, shapes))
    return profiles


def covering_profile(profiles: Sequence[ProfileSpec]) -> ProfileSpec:
    """The one profile spanning all of `profiles`: elementwise smallest min and largest max, and
    the opt of the profile with the largest max batch (the most general one).

    trtexec's --minShapes/--optShapes/--maxShapes describe a single profile, so the trtexec
    command uses this one: every (batch, seq) the profiles accept still runs, tuned for the largest.
    """
    if not profiles:
        raise ValueError("no profiles to cover")
    widest = max(profiles, key=lambda p: (p.batch[2], p.seq[2]))
    names = list(widest.shapes)
    for p in profiles:
        if set(p.shapes) != set(names):
            raise ValueError(f"profiles name different inputs: {sorted(p.shapes)} vs {sorted(names)}")

    def envelope(lo: Sequence[tuple[int, ...]], opt: tuple[int, ...], hi: Sequence[tuple[int, ...]]) -> ShapeRange:
        return ShapeRange(tuple(map(min, zip(*lo))), opt, tuple(map(max, zip(*hi))))

    shapes = {n: envelope([p.shapes[n].min for p in profiles], widest.shapes[n].opt,
                          [p.shapes[n].max for p in profiles]) for n in names}
    batch = (min(p.batch[0] for p in profiles), widest.batch[1], max(p.batch[2] for p in profiles))
    seq = (min(p.seq[0] for p in profiles), widest.seq[1], max(p.seq[2] for p in profiles))
    return ProfileSpec(batch, seq, shapes)


def check_profile_inputs(network_inputs: Sequence[str], profiles: Sequence[ProfileSpec]) -> None:
    """Raise a ValueError naming both lists when the profiles do not give shapes for exactly the
    network's inputs (TensorRT's own message for this is an opaque build failure)."""
    expected = set(network_inputs)
    for i, p in enumerate(profiles):
        if set(p.shapes) != expected:
            missing, extra = sorted(expected - set(p.shapes)), sorted(set(p.shapes) - expected)
            raise ValueError(f"profile #{i} does not match the ONNX inputs {sorted(expected)}: "
                             f"missing {missing}, not in the model {extra}")


# ----------------------------------------------------------------------------- writing the cache


def write_sidecar(path: Path, sidecar: EngineSidecar) -> None:
    text = json.dumps(sidecar.to_dict(), indent=2, sort_keys=True, allow_nan=False) + "\n"
    atomic_write(path, text.encode("utf-8"))


def write_engine(cache_dir: str | Path, fields: EngineFields, engine: bytes, *, stem: str = DEFAULT_STEM,
                 build_seconds: float = 0.0, workspace_gb: float = DEFAULT_WORKSPACE_GB) -> Path:
    """Write the engine, then its sidecar (both atomically). The sidecar goes last: it is the
    mark of a complete engine, so a crash in between leaves an engine that is never used."""
    path = Path(cache_dir) / engine_filename(fields.key, stem)
    atomic_write(path, engine)
    record = EngineSidecar(key=fields.key, engine=path.name, fields=fields, engine_bytes=len(engine),
                           engine_sha256=hashlib.sha256(engine).hexdigest(),
                           built_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                           build_seconds=round(build_seconds, 3), workspace_gb=workspace_gb)
    write_sidecar(sidecar_path(path), record)
    return path


# ----------------------------------------------------------------------------- trtexec


@dataclass(frozen=True)
class TrtexecCommand:
    """A trtexec invocation as an argument list (for subprocess) and as one shell line (for people)."""

    args: list[str]
    shell: str


def shape_spec(profile: ProfileSpec, which: str) -> str:
    """trtexec's shape syntax for one of "min"/"opt"/"max": `name:AxB,name:C`."""
    if which not in ("min", "opt", "max"):
        raise ValueError(f"which must be min, opt or max, not {which!r}")
    return ",".join(f"{name}:{'x'.join(map(str, getattr(r, which)))}" for name, r in profile.shapes.items())


def trtexec_command(
    onnx_path: str | Path,
    engine_path: str | Path,
    precision: str,
    profiles: Sequence[ProfileSpec],
    *,
    workspace_gb: float = DEFAULT_WORKSPACE_GB,
    timing_cache: str | Path | None = None,
    trtexec: str = "trtexec",
) -> TrtexecCommand:
    """The trtexec line that builds the same engine as `build_engine` (e.g. on a Jetson without the
    Python bindings; trtexec is at /usr/src/tensorrt/bin/trtexec there).

    trtexec takes one profile from the shape flags, so this uses `covering_profile(profiles)`.
    int8 assumes a QDQ model (trtexec --int8 on a plain model uses placeholder scales and gives
    wrong outputs). --memPoolSize is in MiB without a suffix, which TensorRT 8.6 and 10 both read.
    """
    if workspace_gb <= 0:
        raise ValueError(f"workspace_gb must be positive, got {workspace_gb}")
    profile = covering_profile(profiles)
    # trtexec cannot be asked whether the model is quantised: int8 is taken to mean a QDQ model.
    flags = precision_flags(precision, has_qdq=validate_precision(precision) == "int8")
    args = [trtexec, f"--onnx={onnx_path}", f"--saveEngine={engine_path}",
            f"--minShapes={shape_spec(profile, 'min')}", f"--optShapes={shape_spec(profile, 'opt')}",
            f"--maxShapes={shape_spec(profile, 'max')}"]
    args += [f"--{flag.lower()}" for flag in flags]
    args.append(f"--memPoolSize=workspace:{max(1, int(workspace_gb * 1024))}")
    if timing_cache is not None:
        args.append(f"--timingCacheFile={timing_cache}")
    return TrtexecCommand(args, shlex.join(args))


def write_trtexec_script(
    onnx_path: str | Path,
    precision: str = "fp16",
    profiles: Sequence[ProfileSpec] | None = None,
    *,
    workspace_gb: float = DEFAULT_WORKSPACE_GB,
) -> Path:
    """Write `<stem>.<precision>.trtexec.sh` beside the ONNX file and return its path.

    It uses file names relative to its own folder, so the folder can be copied to a Jetson as is.
    The engine it writes has no sidecar: it is for running by hand, not for `build_engine`'s cache.
    """
    onnx_path = Path(onnx_path)
    precision = validate_precision(precision)
    if precision == "int8":
        try:
            quantised = onnx_has_qdq(onnx_path)
        except ImportError:
            quantised = True  # without `onnx` we cannot look; trtexec will be told int8 as asked
        precision_flags(precision, quantised)  # raises for a plain model
    base = onnx_path.name.removesuffix(".onnx")
    command = trtexec_command(onnx_path.name, f"{base}.{precision}.engine", precision,
                              profiles if profiles is not None else _profiles_for(onnx_path),
                              workspace_gb=workspace_gb, timing_cache=f"{base}.timing.cache")
    script = onnx_path.with_name(f"{base}.{precision}.trtexec.sh")
    text = ("#!/bin/sh\n"
            f"# Build a TensorRT {precision} engine for {onnx_path.name} (written by crisislens.export.tensorrt).\n"
            "# On Jetson trtexec is /usr/src/tensorrt/bin/trtexec: put it on PATH or edit the line below.\n"
            'cd "$(dirname "$0")" || exit 1\n'
            f"exec {command.shell}\n")
    atomic_write(script, text.encode("utf-8"))
    script.chmod(0o755)
    return script


# ----------------------------------------------------------------------------- building


@dataclass(frozen=True)
class BuildResult:
    """What `build_engine` did: the engine to load, its key, the build time (0 when cached),
    whether it was (re)built and why."""

    path: Path
    key: str
    seconds: float
    rebuilt: bool
    reason: str


def network_flags(tensorrt_version: str, explicit_batch_flag: int) -> int:
    """`create_network` flags: TensorRT 8.x needs EXPLICIT_BATCH for ONNX; 10.x is always explicit
    batch and deprecates the flag."""
    major = int(tensorrt_version.split(".")[0])
    return 0 if major >= 10 else 1 << int(explicit_batch_flag)


def load_timing_cache(config: Any, path: Path | None) -> bool:
    """Attach a timing cache to a builder config, from `path` when it holds one.

    The timing cache remembers how fast each kernel tactic was, so a rebuild (new ONNX, new
    profiles) skips most of the tuning: minutes instead of tens of minutes on a Jetson. TensorRT
    refuses a cache from another GPU or version (ignore_mismatch=False); then, or when the file is
    corrupt, an empty cache is used and `save_timing_cache` replaces the file. Returns whether a
    saved cache was used.
    """
    data = path.read_bytes() if path is not None and path.is_file() else b""
    if data:
        cache = config.create_timing_cache(data)
        if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
            return True
    config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)
    return False


def save_timing_cache(config: Any, path: Path | None) -> None:
    """Write the builder config's timing cache (including this build's timings) to `path`."""
    if path is not None:
        atomic_write(path, bytes(config.get_timing_cache().serialize()))


def _parser_error(error: Any) -> str:
    # TensorRT 10 names the failing node; 8.6 gives only its index.
    where = []
    for attr in ("node_name", "node_operator"):
        fn = getattr(error, attr, None)
        if callable(fn) and fn():
            where.append(str(fn()))
    node = error.node() if callable(getattr(error, "node", None)) else -1
    prefix = f"node {node}" if node is not None and node >= 0 else "model"
    return f"{prefix}{' (' + ' '.join(where) + ')' if where else ''}: {error.desc()}"


def _has_qdq_layers(trt: Any, network: Any) -> bool:
    qdq = (trt.LayerType.QUANTIZE, trt.LayerType.DEQUANTIZE)
    return any(network.get_layer(i).type in qdq for i in range(network.num_layers))


def _build_serialized(trt: Any, onnx_path: Path, precision: str, profiles: Sequence[ProfileSpec],
                      workspace_gb: float, timing_cache: Path | None) -> bytes:
    logger = capturing_logger(trt)
    builder = trt.Builder(logger)
    flags = network_flags(trt.__version__, getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", 0))
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)  # keep alive until the build: it owns the weights
    if not parser.parse_from_file(str(onnx_path)):  # from the file, so external data would resolve
        errors = [_parser_error(parser.get_error(i)) for i in range(parser.num_errors)] or logger.lines[-5:]
        raise EngineBuildError(f"TensorRT could not parse {onnx_path}:\n  " + "\n  ".join(errors or ["(no details)"]))
    check_profile_inputs([network.get_input(i).name for i in range(network.num_inputs)], profiles)

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    for flag in precision_flags(precision, _has_qdq_layers(trt, network)):
        config.set_flag(getattr(trt.BuilderFlag, flag))
    for i, spec in enumerate(profiles):
        profile = builder.create_optimization_profile()
        for name, r in spec.shapes.items():
            profile.set_shape(name, r.min, r.opt, r.max)
        if config.add_optimization_profile(profile) < 0:
            raise EngineBuildError(f"TensorRT rejected optimisation profile #{i} ({spec.describe()})")
    load_timing_cache(config, timing_cache)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        detail = "\n  ".join(logger.lines[-10:]) or "(TensorRT logged nothing)"
        raise EngineBuildError(f"TensorRT failed to build a {precision} engine from {onnx_path}:\n  {detail}")
    save_timing_cache(config, timing_cache)
    return bytes(serialized)


def build_engine(
    onnx_path: str | Path,
    cache_dir: str | Path,
    precision: str = "fp16",
    profiles: Sequence[ProfileSpec] | None = None,
    *,
    workspace_gb: float = DEFAULT_WORKSPACE_GB,
    timing_cache: str | Path | None = None,
    stem: str = DEFAULT_STEM,
    force: bool = False,
) -> BuildResult:
    """The engine for `onnx_path` on this GPU: the cached one when its sidecar matches every key
    field, else a fresh build (engine + sidecar written atomically into `cache_dir`).

    `profiles` defaults to `make_profiles()` at the graph's photo size. `timing_cache` is a file to load tuning results from
    and save them to. Without TensorRT, writes the trtexec script beside the ONNX file and raises
    `TensorRTUnavailable` pointing at it.
    """
    onnx_path, cache_dir = Path(onnx_path), Path(cache_dir)
    precision = validate_precision(precision)
    if profiles is None and Path(onnx_path).is_file():
        profiles = _profiles_for(Path(onnx_path))
    profiles = tuple(profiles) if profiles is not None else tuple(make_profiles())
    if not profiles:
        raise ValueError("no optimisation profiles given")
    if workspace_gb <= 0:
        raise ValueError(f"workspace_gb must be positive, got {workspace_gb}")
    if not onnx_path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {onnx_path}")
    try:
        trt = import_tensorrt()
    except TensorRTUnavailable as exc:
        try:
            script: Path | None = write_trtexec_script(onnx_path, precision, profiles, workspace_gb=workspace_gb)
        except (OSError, ValueError):
            script = None  # read-only folder or a plain model asked as int8: the message still helps
        raise TensorRTUnavailable(exc.detail, trtexec_script=script) from exc

    gpu = probe_gpu()
    fields = EngineFields(hash_file(onnx_path), str(trt.__version__), gpu.name, gpu.compute_capability,
                          precision, profiles)
    if force:
        reason = "rebuild forced"
    else:
        try:
            path = find_cached_engine(cache_dir, fields, stem)
            return BuildResult(path, fields.key, 0.0, False, f"cached engine matches ({fields.describe()})")
        except EngineMismatch as exc:
            reason = str(exc)
    started = time.perf_counter()
    engine = _build_serialized(trt, onnx_path, precision, profiles, workspace_gb,
                               Path(timing_cache) if timing_cache is not None else None)
    seconds = time.perf_counter() - started
    path = write_engine(cache_dir, fields, engine, stem=stem, build_seconds=seconds, workspace_gb=workspace_gb)
    return BuildResult(path, fields.key, seconds, True, reason)


__all__ = [
    "BATCH", "DEFAULT_STEM", "FIELD_LABELS", "IMAGE", "PRECISIONS", "SEQ", "STUDENT_INPUTS", "STUDENT_OUTPUTS",
    "BuildResult", "EngineBuildError", "EngineFields", "EngineMismatch", "EngineSidecar", "GpuInfo", "GpuProbeError",
    "InputLayout", "NoProfileFits", "ProfileSpec", "ShapeRange", "SidecarError", "TensorRTUnavailable",
    "TrtexecCommand", "build_engine", "check_profile_inputs", "onnx_patch_count", "student_inputs", "covering_profile", "differing_fields",
    "engine_filename", "find_cached_engine", "import_tensorrt", "load_timing_cache", "make_profiles",
    "mismatch_message", "network_flags", "onnx_has_qdq", "parse_nvidia_smi", "precision_flags", "probe_gpu",
    "read_sidecar", "save_timing_cache", "select_profile", "shape_spec", "sidecar_path", "trtexec_command",
    "validate_precision", "write_engine", "write_sidecar", "write_trtexec_script",
]
