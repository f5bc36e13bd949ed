"""TensorRT engine builder: profiles, cache key and sidecar, trtexec line, precision rules, and the
build itself against a fake `tensorrt` module. The real build runs only where TensorRT and a GPU are."""

from __future__ import annotations

import dataclasses
import enum
import json
import shlex
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from crisislens.export import tensorrt as T
from crisislens.export.tensorrt import (
    EngineFields,
    EngineMismatch,
    GpuInfo,
    InputLayout,
    NoProfileFits,
    ProfileSpec,
    ShapeRange,
)

INPUT_NAMES = ("input_ids", "attention_mask", "pixel_values", "image_index")
ORIN = GpuInfo("Orin", "8.7")


def fields(**changes: Any) -> EngineFields:
    base = EngineFields("ab" * 32, "10.3.0", "Orin", "8.7", "fp16", tuple(T.make_profiles()))
    return dataclasses.replace(base, **changes)


# ----------------------------------------------------------------------------- profiles


def test_default_profiles_one_per_batch_bucket_with_full_sequence_range():
    profiles = T.make_profiles()
    assert [p.batch for p in profiles] == [(1, 1, 1), (1, 8, 8), (1, 32, 32)]
    assert all(p.seq == (1, 32, 64) for p in profiles)  # opt = middle bucket of (16, 32, 64)
    p = profiles[1]
    assert list(p.shapes) == list(INPUT_NAMES)
    assert p.shapes["input_ids"] == ShapeRange((1, 1), (8, 32), (8, 64))
    assert p.shapes["attention_mask"] == p.shapes["input_ids"]
    assert p.shapes["pixel_values"] == ShapeRange((1, 3, 224, 224), (8, 3, 224, 224), (8, 3, 224, 224))
    assert p.shapes["image_index"] == ShapeRange((1,), (8,), (8,))


def test_profiles_follow_image_size_opt_seq_and_input_layouts():
    layouts = (InputLayout("ids", (T.BATCH, T.SEQ)), InputLayout("img", (T.BATCH, 3, T.IMAGE, T.IMAGE)))
    (p,) = T.make_profiles((4,), (8, 16), max_seq=16, image_size=32, opt_seq=12, inputs=layouts)
    assert p.shapes == {"ids": ShapeRange((1, 1), (4, 12), (4, 16)),
                        "img": ShapeRange((1, 3, 32, 32), (4, 3, 32, 32), (4, 3, 32, 32))}


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"batch_buckets": ()}, "batch buckets are empty"),
    ({"seq_buckets": []}, "sequence buckets are empty"),
    ({"batch_buckets": (0, 8)}, "positive integers"),
    ({"batch_buckets": (-1,)}, "positive integers"),
    ({"batch_buckets": (1.5,)}, "positive integers"),
    ({"batch_buckets": (True,)}, "positive integers"),
    ({"batch_buckets": (8, 1)}, "strictly increasing"),
    ({"seq_buckets": (16, 16)}, "strictly increasing"),
    ({"seq_buckets": (16, 128)}, "128 exceeds the maximum sequence length 64"),
    ({"max_seq": 0}, "max_seq must be a positive integer"),
    ({"image_size": 0}, "image_size must be a positive integer"),
    ({"opt_seq": 65}, "opt_seq 65 exceeds"),
    ({"inputs": (InputLayout("x", ("width",)),)}, "unknown axis 'width'"),
])
def test_profile_validation_errors_say_what_is_wrong(kwargs, message):
    with pytest.raises(ValueError, match=message):
        T.make_profiles(**kwargs)


def test_shape_range_rejects_inconsistent_shapes():
    with pytest.raises(ValueError, match="rank"):
        ShapeRange((1, 2), (1, 2), (1,))
    with pytest.raises(ValueError, match="min <= opt <= max"):
        ShapeRange((2,), (1,), (4,))


@pytest.mark.parametrize(("batch", "seq", "index"), [
    (1, 1, 0), (1, 64, 0), (2, 10, 1), (8, 64, 1), (9, 1, 2), (32, 64, 2),
])
def test_select_profile_picks_the_smallest_that_covers(batch, seq, index):
    assert T.select_profile(T.make_profiles(), batch, seq) == index


@pytest.mark.parametrize(("batch", "seq", "message"), [(33, 1, "batch 33, seq 1"), (1, 65, "batch 1, seq 65")])
def test_select_profile_explains_when_nothing_fits(batch, seq, message):
    with pytest.raises(NoProfileFits, match=message) as info:
        T.select_profile(T.make_profiles(), batch, seq)
    assert "#2: batch 1..32 (opt 32), seq 1..64 (opt 32)" in str(info.value)


def test_select_profile_rejects_non_positive_sizes():
    with pytest.raises(ValueError, match="batch must be a positive integer"):
        T.select_profile(T.make_profiles(), 0, 4)


def test_covering_profile_spans_all_and_takes_the_widest_opt():
    def spec(b: tuple[int, int, int], s: tuple[int, int, int]) -> ProfileSpec:
        return ProfileSpec(b, s, {"ids": ShapeRange((b[0], s[0]), (b[1], s[1]), (b[2], s[2]))})

    cover = T.covering_profile([spec((1, 1, 1), (4, 8, 16)), spec((2, 8, 8), (1, 32, 64))])
    assert cover.batch == (1, 8, 8) and cover.seq == (1, 32, 64)
    assert cover.shapes["ids"] == ShapeRange((1, 1), (8, 32), (8, 64))
    assert T.covering_profile(T.make_profiles()) == T.make_profiles()[-1]
    with pytest.raises(ValueError, match="no profiles"):
        T.covering_profile([])


def test_profile_inputs_must_match_the_network():
    T.check_profile_inputs(list(INPUT_NAMES), T.make_profiles())
    with pytest.raises(ValueError, match=r"missing \['token_type_ids'\], not in the model \['image_index'\]"):
        T.check_profile_inputs(["input_ids", "attention_mask", "pixel_values", "token_type_ids"], T.make_profiles())


# ----------------------------------------------------------------------------- precision


def test_precision_validation():
    assert [T.validate_precision(p) for p in ("fp32", "FP16", "int8")] == ["fp32", "fp16", "int8"]
    for bad in ("bf16", "", "int4", None):
        with pytest.raises(ValueError, match="is not one of: fp32, fp16, int8"):
            T.validate_precision(bad)  # type: ignore[arg-type]


def test_precision_flags_follow_explicit_quantisation():
    assert T.precision_flags("fp32", has_qdq=False) == ()
    assert T.precision_flags("fp16", has_qdq=False) == ("FP16",)
    assert T.precision_flags("int8", has_qdq=True) == ("INT8", "FP16")
    with pytest.raises(ValueError, match="int8 needs an explicitly quantised"):
        T.precision_flags("int8", has_qdq=False)
    with pytest.raises(ValueError, match="build it as int8, not fp16"):
        T.precision_flags("fp16", has_qdq=True)


# ----------------------------------------------------------------------------- cache key and sidecar


def test_cache_key_is_deterministic_short_and_names_the_file():
    key = fields().key
    assert key == fields().key and len(key) == 16 and int(key, 16) >= 0
    assert T.engine_filename(key) == f"student.{key}.engine"
    # input order in a profile does not change the key (canonical JSON)
    reordered = tuple(ProfileSpec(p.batch, p.seq, dict(reversed(list(p.shapes.items())))) for p in fields().profiles)
    assert fields(profiles=reordered).key == key


@pytest.mark.parametrize(("name", "value"), [
    ("onnx_sha256", "cd" * 32), ("tensorrt_version", "10.7.0"), ("gpu_name", "NVIDIA H100 80GB HBM3"),
    ("compute_capability", "9.0"), ("precision", "int8"), ("profiles", tuple(T.make_profiles((1, 16)))),
])
def test_cache_key_changes_with_every_field(name, value):
    assert fields(**{name: value}).key != fields().key


def test_sidecar_round_trip(tmp_path):
    path = T.write_engine(tmp_path, fields(), b"engine-bytes", build_seconds=1.23456, workspace_gb=1.5)
    assert path.name == f"student.{fields().key}.engine" and path.read_bytes() == b"engine-bytes"
    record = T.read_sidecar(T.sidecar_path(path))
    assert record.fields == fields() and record.key == fields().key and record.engine == path.name
    assert record.engine_bytes == 12 and record.build_seconds == 1.235 and record.workspace_gb == 1.5
    raw = json.loads(T.sidecar_path(path).read_text())
    assert raw["fields"]["tensorrt_version"] == "10.3.0" and raw["fields"]["gpu_name"] == "Orin"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert T.find_cached_engine(tmp_path, fields()) == path


@pytest.mark.parametrize(("change", "label"), [
    ({"tensorrt_version": "10.7.0"}, "TensorRT version"),
    ({"gpu_name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}, "GPU, compute capability"),
    ({"precision": "fp32"}, "precision"),
    ({"onnx_sha256": "cd" * 32}, "ONNX model"),
    ({"profiles": tuple(T.make_profiles((1, 16)))}, "optimisation profiles"),
])
def test_mismatch_names_the_differing_field(tmp_path, change, label):
    T.write_engine(tmp_path, fields(), b"old")
    with pytest.raises(EngineMismatch) as info:
        T.find_cached_engine(tmp_path, fields(**change))
    assert info.value.differing == tuple(n for n in T.FIELD_LABELS if n in change)
    assert f"(differs in: {label})" in str(info.value)


def test_mismatch_message_reads_like_a_sentence(tmp_path):
    old = T.write_engine(tmp_path, fields(), b"old")
    with pytest.raises(EngineMismatch) as info:
        T.find_cached_engine(tmp_path, fields(tensorrt_version="10.7.0"))
    message = str(info.value)
    assert message.startswith(f"{old.name} was built for TensorRT 10.3.0 on Orin (sm_87), fp16")
    assert "; this is TensorRT 10.7.0 on Orin (sm_87), fp16" in message


def test_newest_other_engine_is_the_one_compared(tmp_path):
    import os

    older = T.write_engine(tmp_path, fields(tensorrt_version="8.6.1"), b"a")
    os.utime(T.sidecar_path(older), (1, 1))
    T.write_engine(tmp_path, fields(), b"b")
    with pytest.raises(EngineMismatch, match="built for TensorRT 10.3.0"):
        T.find_cached_engine(tmp_path, fields(tensorrt_version="10.7.0"))


def test_empty_cache_folder(tmp_path):
    with pytest.raises(EngineMismatch, match="no cached student engine in") as info:
        T.find_cached_engine(tmp_path / "absent", fields())
    assert info.value.differing == ()


@pytest.mark.parametrize(("sidecar_text", "message"), [
    ("{not json", "not valid JSON"),
    ("[]", "not a JSON object"),
    ('{"format": 1, "key": "x"}', "missing field 'engine'"),
    ('{"format": 99}', "sidecar format 99"),
])
def test_corrupt_sidecar_means_rebuild(tmp_path, sidecar_text, message):
    path = T.write_engine(tmp_path, fields(), b"engine")
    T.sidecar_path(path).write_text(sidecar_text)
    with pytest.raises(EngineMismatch, match=message):
        T.find_cached_engine(tmp_path, fields())
    with pytest.raises(T.SidecarError, match=str(T.sidecar_path(path).name)):
        T.read_sidecar(T.sidecar_path(path))


def test_missing_sidecar_missing_engine_and_truncated_engine(tmp_path):
    path = T.write_engine(tmp_path, fields(), b"engine")
    path.write_bytes(b"eng")
    with pytest.raises(EngineMismatch, match="3 bytes, the sidecar records 6"):
        T.find_cached_engine(tmp_path, fields())
    path.unlink()
    with pytest.raises(EngineMismatch, match="engine file is missing"):
        T.find_cached_engine(tmp_path, fields())
    T.sidecar_path(path).unlink()
    path.write_bytes(b"engine")
    with pytest.raises(EngineMismatch, match="no sidecar metadata"):
        T.find_cached_engine(tmp_path, fields())


def test_corrupt_other_sidecars_are_ignored(tmp_path):
    (tmp_path / "student.0123456789abcdef.engine.json").write_text("garbage")
    with pytest.raises(EngineMismatch, match="no cached student engine"):
        T.find_cached_engine(tmp_path, fields())


# ----------------------------------------------------------------------------- GPU probe


def test_parse_nvidia_smi():
    assert T.parse_nvidia_smi("NVIDIA H100 80GB HBM3, 9.0\n") == GpuInfo("NVIDIA H100 80GB HBM3", "9.0")
    assert T.parse_nvidia_smi("A, 8.0\nOrin, 8.7\n", device=1).sm == "sm_87"
    with pytest.raises(T.GpuProbeError, match="compute_cap"):
        T.parse_nvidia_smi("Tesla T4, [N/A]\n")
    with pytest.raises(T.GpuProbeError, match="no device 2"):
        T.parse_nvidia_smi("A, 8.0\n", device=2)


def test_probe_gpu_falls_back_and_then_explains(monkeypatch):
    from crisislens.runtime.backends import gpu as trt_profiles  # where probe_gpu and its probes live

    def fail(message):
        def probe(device):
            raise T.GpuProbeError(message)
        return probe

    monkeypatch.setattr(trt_profiles, "_gpu_from_cuda_python", fail("cuda-python is not installed"))
    monkeypatch.setattr(trt_profiles, "_gpu_from_nvidia_smi", lambda device: ORIN)
    assert T.probe_gpu() == ORIN
    monkeypatch.setattr(trt_profiles, "_gpu_from_nvidia_smi", fail("nvidia-smi could not run"))
    with pytest.raises(T.GpuProbeError, match="cuda-python is not installed; nvidia-smi could not run"):
        T.probe_gpu()


# ----------------------------------------------------------------------------- trtexec


def small_profiles() -> list[ProfileSpec]:
    return T.make_profiles((1, 4), (8, 16), max_seq=16, image_size=32)


def test_trtexec_command_exact_flags():
    cmd = T.trtexec_command("m.onnx", "m.engine", "fp16", small_profiles(), timing_cache="t.cache")
    assert cmd.args == [
        "trtexec", "--onnx=m.onnx", "--saveEngine=m.engine",
        "--minShapes=input_ids:1x1,attention_mask:1x1,pixel_values:1x3x32x32,image_index:1",
        "--optShapes=input_ids:4x8,attention_mask:4x8,pixel_values:4x3x32x32,image_index:4",
        "--maxShapes=input_ids:4x16,attention_mask:4x16,pixel_values:4x3x32x32,image_index:4",
        "--fp16", "--memPoolSize=workspace:2048", "--timingCacheFile=t.cache",
    ]
    assert cmd.shell == " ".join(cmd.args)


@pytest.mark.parametrize(("precision", "flags"), [("fp32", []), ("int8", ["--int8", "--fp16"])])
def test_trtexec_precision_flags(precision, flags):
    args = T.trtexec_command("m.onnx", "m.engine", precision, small_profiles(), workspace_gb=0.5).args
    assert [a for a in args if a in ("--fp16", "--int8", "--best")] == flags
    assert "--stronglyTyped" not in args and "--memPoolSize=workspace:512" in args
    assert not any(a.startswith("--timingCacheFile") for a in args)


def test_trtexec_shell_string_quotes_paths():
    cmd = T.trtexec_command("my models/m.onnx", "out dir/m.engine", "fp16", small_profiles())
    assert "'--onnx=my models/m.onnx'" in cmd.shell
    assert shlex.split(cmd.shell) == cmd.args


def test_trtexec_script_written_beside_the_onnx(tmp_path):
    onnx = tmp_path / "student.onnx"
    onnx.write_bytes(b"not parsed for fp16")
    script = T.write_trtexec_script(onnx, "fp16", small_profiles())
    assert script == tmp_path / "student.fp16.trtexec.sh" and script.stat().st_mode & 0o111
    text = script.read_text()
    assert 'cd "$(dirname "$0")"' in text
    assert "exec trtexec --onnx=student.onnx --saveEngine=student.fp16.engine" in text
    assert "--timingCacheFile=student.timing.cache" in text


def test_trtexec_script_refuses_int8_for_a_plain_model(tmp_path):
    pytest.importorskip("onnx", reason="onnx (export extra) is needed to look for Q/DQ nodes")
    plain, qdq = make_tiny_onnx(tmp_path / "plain.onnx"), make_tiny_onnx(tmp_path / "qdq.onnx", qdq=True)
    assert not T.onnx_has_qdq(plain) and T.onnx_has_qdq(qdq)
    with pytest.raises(ValueError, match="int8 needs an explicitly quantised"):
        T.write_trtexec_script(plain, "int8")
    assert "--int8" in T.write_trtexec_script(qdq, "int8").read_text()


# ----------------------------------------------------------------------------- without TensorRT


def test_module_imports_without_tensorrt():
    code = ("import sys\nsys.modules['tensorrt'] = None  # make `import tensorrt` fail even where installed\n"
            "import crisislens.export.tensorrt as m\nm.make_profiles()\n"
            "try:\n    m.import_tensorrt()\nexcept m.TensorRTUnavailable as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install tensorrt --extra-index-url https://pypi.nvidia.com" in out.stdout
    assert "python3-libnvinfer" in out.stdout and "trtexec" in out.stdout


def test_build_without_tensorrt_writes_the_trtexec_script(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    onnx = tmp_path / "student.onnx"
    onnx.write_bytes(b"x")
    with pytest.raises(T.TensorRTUnavailable) as info:
        T.build_engine(onnx, tmp_path / "engines", "fp16")
    assert info.value.trtexec_script == tmp_path / "student.fp16.trtexec.sh"
    assert info.value.trtexec_script.is_file() and str(info.value.trtexec_script) in str(info.value)


def test_build_engine_validates_before_importing_tensorrt(tmp_path):
    with pytest.raises(ValueError, match="precision 'bf16'"):
        T.build_engine(tmp_path / "m.onnx", tmp_path, "bf16")
    with pytest.raises(FileNotFoundError, match="ONNX model not found"):
        T.build_engine(tmp_path / "m.onnx", tmp_path, "fp16")
    with pytest.raises(ValueError, match="no optimisation profiles"):
        T.build_engine(tmp_path / "m.onnx", tmp_path, "fp16", profiles=[])


def test_network_flags_explicit_batch_only_before_tensorrt_10():
    assert T.network_flags("8.6.1", 0) == 1
    assert T.network_flags("10.7.0", 0) == 0


# ----------------------------------------------------------------------------- fake TensorRT


def fake_tensorrt(version: str = "10.7.0", inputs: tuple[str, ...] = INPUT_NAMES, layers: tuple[str, ...] = ("CONV",),
                  parse_ok: bool = True, build_ok: bool = True) -> tuple[types.ModuleType, types.SimpleNamespace]:
    """A stand-in for the `tensorrt` module with the API surface the builder uses, recording calls."""
    rec = types.SimpleNamespace(network_flags=None, flags=[], pool=None, profiles=[], cache_in=None, builds=0,
                                ignore_mismatch=None, parsed=None)
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version

    class Severity(enum.IntEnum):
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

    class ILogger:
        pass

    ILogger.Severity = Severity  # type: ignore[attr-defined]

    class Cache:
        def __init__(self, data: bytes):
            self.data = data

        def serialize(self) -> bytes:
            return self.data + b"|tuned"

    class Config:
        def set_memory_pool_limit(self, pool, size):
            rec.pool = (pool, size)

        def set_flag(self, flag):
            rec.flags.append(flag)

        def add_optimization_profile(self, profile):
            rec.profiles.append(profile.shapes)
            return len(rec.profiles) - 1

        def create_timing_cache(self, data):
            return Cache(bytes(data))

        def set_timing_cache(self, cache, ignore_mismatch):
            rec.cache_in, rec.ignore_mismatch, self.cache = cache.data, ignore_mismatch, cache
            return True

        def get_timing_cache(self):
            return self.cache

    class Profile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, min, opt, max):  # noqa: A002 - TensorRT's keyword names
            self.shapes[name] = (tuple(min), tuple(opt), tuple(max))

    class Network:
        num_inputs, num_layers = len(inputs), len(layers)

        def get_input(self, i):
            return types.SimpleNamespace(name=inputs[i])

        def get_layer(self, i):
            return types.SimpleNamespace(type=layers[i])

    class Builder:
        def __init__(self, logger):
            self.logger = logger

        def create_network(self, flags):
            rec.network_flags = flags
            return Network()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            rec.builds += 1
            if not build_ok:
                self.logger.log(Severity.INFO, "chatter")
                self.logger.log(Severity.ERROR, "out of workspace memory")
                return None
            return memoryview(b"ENGINE:" + ",".join(rec.flags).encode())

    class ParserError:
        def desc(self):
            return "Unsupported datatype"

        def node(self):
            return 3

        def node_name(self):
            return "/image/Cast"

        def node_operator(self):
            return "Cast"

    class OnnxParser:
        num_errors = 0 if parse_ok else 1

        def __init__(self, network, logger):
            pass

        def parse_from_file(self, path):
            rec.parsed = path
            return parse_ok

        def get_error(self, i):
            return ParserError()

    trt.ILogger, trt.Builder, trt.OnnxParser = ILogger, Builder, OnnxParser
    trt.Logger = ILogger
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(EXPLICIT_BATCH=0)
    trt.BuilderFlag = types.SimpleNamespace(FP16="FP16", INT8="INT8")
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
    trt.LayerType = types.SimpleNamespace(QUANTIZE="Q", DEQUANTIZE="DQ", CONVOLUTION="CONV")
    return trt, rec


@pytest.fixture
def onnx_file(tmp_path: Path) -> Path:
    path = tmp_path / "student.onnx"
    path.write_bytes(b"onnx graph stand-in")
    return path


@pytest.fixture
def use_fake(monkeypatch):
    monkeypatch.setattr(T, "probe_gpu", lambda device=0: ORIN)

    def install(**kwargs):
        trt, rec = fake_tensorrt(**kwargs)
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        return rec

    return install


def test_fake_fp16_build_sets_flags_pool_and_profiles_then_caches(use_fake, onnx_file, tmp_path):
    rec = use_fake()
    result = T.build_engine(onnx_file, tmp_path / "engines", "fp16", workspace_gb=1.5)
    assert result.rebuilt and result.reason.startswith("no cached student engine")
    assert result.path.read_bytes() == b"ENGINE:FP16" and result.path.name == f"student.{result.key}.engine"
    assert rec.flags == ["FP16"] and rec.pool == ("WORKSPACE", int(1.5 * 2**30)) and rec.network_flags == 0
    assert rec.parsed == str(onnx_file)
    assert rec.profiles == [{n: (r.min, r.opt, r.max) for n, r in p.shapes.items()} for p in T.make_profiles()]
    record = T.read_sidecar(T.sidecar_path(result.path))
    assert record.fields.gpu_name == "Orin" and record.fields.tensorrt_version == "10.7.0"
    assert record.fields.onnx_sha256 == T.hash_file(onnx_file)

    again = T.build_engine(onnx_file, tmp_path / "engines", "fp16", workspace_gb=1.5)
    assert (again.path, again.rebuilt, again.seconds, rec.builds) == (result.path, False, 0.0, 1)
    assert again.reason.startswith("cached engine matches")
    forced = T.build_engine(onnx_file, tmp_path / "engines", "fp16", force=True)
    assert forced.rebuilt and forced.reason == "rebuild forced" and rec.builds == 2


def test_fake_upgrade_rebuilds_and_says_why(use_fake, onnx_file, tmp_path):
    use_fake(version="10.3.0")
    old = T.build_engine(onnx_file, tmp_path, "fp16")
    rec = use_fake(version="10.7.0")
    new = T.build_engine(onnx_file, tmp_path, "fp16")
    assert new.rebuilt and new.path != old.path and rec.builds == 1
    assert "built for TensorRT 10.3.0 on Orin (sm_87)" in new.reason and "differs in: TensorRT version" in new.reason


def test_fake_tensorrt_8_uses_the_explicit_batch_flag(use_fake, onnx_file, tmp_path):
    rec = use_fake(version="8.6.1")
    T.build_engine(onnx_file, tmp_path, "fp32")
    assert rec.network_flags == 1 and rec.flags == []


def test_fake_int8_needs_qdq_layers(use_fake, onnx_file, tmp_path):
    rec = use_fake(layers=("Q", "CONV", "DQ"))
    T.build_engine(onnx_file, tmp_path, "int8")
    assert rec.flags == ["INT8", "FP16"]
    with pytest.raises(ValueError, match="build it as int8, not fp16"):
        T.build_engine(onnx_file, tmp_path, "fp16")
    use_fake(layers=("CONV",))  # same file, so force past the int8 engine cached above
    with pytest.raises(ValueError, match="int8 needs an explicitly quantised"):
        T.build_engine(onnx_file, tmp_path, "int8", force=True)


def test_fake_parser_errors_are_reported_with_their_node(use_fake, onnx_file, tmp_path):
    use_fake(parse_ok=False)
    with pytest.raises(T.EngineBuildError, match=r"node 3 \(/image/Cast Cast\): Unsupported datatype"):
        T.build_engine(onnx_file, tmp_path, "fp16")


def test_fake_build_failure_reports_the_log_and_writes_nothing(use_fake, onnx_file, tmp_path):
    use_fake(build_ok=False)
    with pytest.raises(T.EngineBuildError, match=r"\[ERROR\] out of workspace memory") as info:
        T.build_engine(onnx_file, tmp_path / "engines", "fp16")
    assert "chatter" not in str(info.value)
    assert not (tmp_path / "engines").exists()


def test_fake_input_names_must_match_the_profiles(use_fake, onnx_file, tmp_path):
    use_fake(inputs=("input_ids", "attention_mask", "pixel_values"))
    with pytest.raises(ValueError, match=r"not in the model \['image_index'\]"):
        T.build_engine(onnx_file, tmp_path, "fp16")


def test_fake_timing_cache_is_loaded_and_saved(use_fake, onnx_file, tmp_path):
    cache = tmp_path / "timing.cache"
    rec = use_fake()
    T.build_engine(onnx_file, tmp_path, "fp16", timing_cache=cache)
    assert rec.cache_in == b"" and rec.ignore_mismatch is False and cache.read_bytes() == b"|tuned"
    rec = use_fake()
    T.build_engine(onnx_file, tmp_path, "fp16", timing_cache=cache, force=True)
    assert rec.cache_in == b"|tuned" and cache.read_bytes() == b"|tuned|tuned"


# ----------------------------------------------------------------------------- real TensorRT


def make_tiny_onnx(path: Path, qdq: bool = False, image_size: int = 224, patch_keep: bool = False) -> Path:
    """A few-node model with the student's ONNX signature (4 inputs, 3 outputs, dynamic batch/seq);
    `patch_keep` adds that fifth input ([batch, 49]: 0 zeroes a patch's score)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    f32 = TensorProto.FLOAT
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        helper.make_tensor_value_info("pixel_values", f32, ["batch", 3, image_size, image_size]),
        helper.make_tensor_value_info("image_index", TensorProto.INT64, ["batch"]),
    ]
    if patch_keep:
        inputs.append(helper.make_tensor_value_info("patch_keep", TensorProto.INT64, ["batch", 49]))
    outputs = [helper.make_tensor_value_info("logits", f32, ["batch", 5]),
               helper.make_tensor_value_info("token_scores", f32, ["batch", "seq"]),
               helper.make_tensor_value_info("patch_scores", f32, ["batch", 49])]
    inits = [numpy_helper.from_array(np.ones((1, 5), np.float32), "w"),
             numpy_helper.from_array(np.array([1], np.int64), "axis1"),
             numpy_helper.from_array(np.array(-1, np.int64), "minus_one")]
    if qdq:
        inits += [numpy_helper.from_array(np.array(0.05, np.float32), "scale"),
                  numpy_helper.from_array(np.array(0, np.int8), "zero")]
    cell = image_size // 7
    nodes = [
        helper.make_node("Cast", ["input_ids"], ["ids_f"], to=f32),
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=f32),
        helper.make_node("Mul", ["ids_f", "mask_f"], ["token_scores"]),
        *([helper.make_node("QuantizeLinear", ["pixel_values", "scale", "zero"], ["px_q"]),
           helper.make_node("DequantizeLinear", ["px_q", "scale", "zero"], ["px"])] if qdq
          else [helper.make_node("Identity", ["pixel_values"], ["px"])]),
        helper.make_node("AveragePool", ["px"], ["pooled"], kernel_shape=[cell, cell], strides=[cell, cell]),
        helper.make_node("ReduceMean", ["pooled"], ["grid"], axes=[1], keepdims=0),
        helper.make_node("Flatten", ["grid"], ["patch_scores_all" if patch_keep else "patch_scores"], axis=1),
        *([helper.make_node("Cast", ["patch_keep"], ["keep_f"], to=f32),
           helper.make_node("Mul", ["patch_scores_all", "keep_f"], ["patch_scores"])] if patch_keep else []),
        helper.make_node("ReduceSum", ["token_scores", "axis1"], ["tsum"], keepdims=1),
        helper.make_node("Greater", ["image_index", "minus_one"], ["present"]),
        helper.make_node("Cast", ["present"], ["present_f"], to=f32),
        helper.make_node("Unsqueeze", ["present_f", "axis1"], ["present_col"]),
        helper.make_node("Add", ["tsum", "present_col"], ["summary"]),
        helper.make_node("MatMul", ["summary", "w"], ["logits"]),
    ]
    graph = helper.make_graph(nodes, "tiny_student", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_profiles_cover_patch_keep_only_where_the_graph_takes_it(tmp_path):
    pytest.importorskip("onnx", reason="onnx (export extra) is needed to write the test model")
    old = make_tiny_onnx(tmp_path / "old.onnx", image_size=28)
    new = make_tiny_onnx(tmp_path / "new.onnx", image_size=28, patch_keep=True)
    assert T.onnx_patch_count(old) is None and T.onnx_patch_count(new) == 49
    from crisislens.export.bundle import onnx_input_names  # what a bundle's manifest records

    assert onnx_input_names(old) == INPUT_NAMES and onnx_input_names(new) == (*INPUT_NAMES, "patch_keep")
    assert [layout.name for layout in T.student_inputs(old)] == list(INPUT_NAMES)
    profiles = T._profiles_for(new)
    assert profiles[-1].shapes["patch_keep"] == ShapeRange((1, 49), (32, 49), (32, 49))
    T.check_profile_inputs([*INPUT_NAMES, "patch_keep"], profiles)
    with pytest.raises(ValueError, match=r"missing \['patch_keep'\]"):
        T.check_profile_inputs([*INPUT_NAMES, "patch_keep"], T._profiles_for(old))


def test_real_tensorrt_build_and_cache(tmp_path):
    trt = pytest.importorskip("tensorrt", reason="TensorRT is not installed here (needs NVIDIA's index or JetPack)")
    pytest.importorskip("onnx", reason="onnx (export extra) is needed to write the test model")
    try:
        T.probe_gpu()
    except T.GpuProbeError as exc:
        pytest.skip(f"TensorRT is installed but no GPU was found: {exc}")
    onnx_path = make_tiny_onnx(tmp_path / "student.onnx")
    profiles = T.make_profiles((1, 4), (16, 64))
    result = T.build_engine(onnx_path, tmp_path / "engines", "fp16", profiles, workspace_gb=0.5,
                            timing_cache=tmp_path / "timing.cache")
    assert result.rebuilt and result.path.stat().st_size > 0 and (tmp_path / "timing.cache").stat().st_size > 0
    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(result.path.read_bytes())
    assert engine is not None and engine.num_optimization_profiles == 2
    again = T.build_engine(onnx_path, tmp_path / "engines", "fp16", profiles, workspace_gb=0.5)
    assert not again.rebuilt and again.path == result.path


def test_cli_writes_the_trtexec_script_and_explains_missing_tensorrt(tmp_path, capsys, monkeypatch):
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here: this test covers machines without it")
    from crisislens.runtime.cli import EXIT_MISSING_DEPENDENCY, main

    onnx = tmp_path / "model.fp16.onnx"
    onnx.write_bytes(b"not parsed before TensorRT is imported")
    code = main(["export", "tensorrt", "--onnx", str(onnx), "--cache-dir", str(tmp_path / "engines"),
                 "--timing-cache", str(tmp_path / "timing.cache")])
    assert code == EXIT_MISSING_DEPENDENCY
    script = tmp_path / "model.fp16.fp16.trtexec.sh"
    assert script.is_file() and "--fp16" in script.read_text()
    assert "TensorRT is not installed" in capsys.readouterr().err
