"""The native TensorRT backend and backend choice: dtype and buffer logic, batch planning over
profiles, `make_backend`'s fallback and its reason, and `TensorRTBackend` end to end against fake
`tensorrt` and cuda-python modules whose "device memory" is host memory (so every copy, address
and shape the backend hands TensorRT is checked by computing the tiny model's outputs from them).
The real run needs TensorRT, cuda-python and a GPU, and is skipped elsewhere."""

from __future__ import annotations

import ctypes
import enum
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from crisislens.export.tensorrt import EngineFields, make_profiles, sidecar_path, write_engine
from crisislens.runtime.backends import trt as B
from crisislens.runtime.backends import make_backend
from crisislens.runtime.bundle import Variant, hash_file
from crisislens.runtime.backends.ort import OnnxBackend
from crisislens.runtime.backends.engines import EngineMismatch
from crisislens.runtime.backends.gpu import TensorRTUnavailable
from crisislens.runtime.backends.profiles import NoProfileFits, plan_batches
from tests.test_tensorrt import fake_tensorrt, make_tiny_onnx

IMAGE = 14  # the tiny model pools 2x2 cells into the 7x7 patch grid
PROFILES = tuple(make_profiles((1, 4), (8, 16), max_seq=16, image_size=IMAGE))


# ----------------------------------------------------------------------------- pure pieces


@pytest.mark.parametrize(("batch", "seq", "plan"), [
    (1, 16, [(0, 1, 0)]),
    (3, 10, [(0, 3, 1)]),
    (4, 1, [(0, 4, 1)]),
    (9, 8, [(0, 4, 1), (4, 8, 1), (8, 9, 0)]),  # larger than every profile: chunks of the largest
])
def test_plan_batches_uses_the_smallest_profile_and_chunks_big_batches(batch, seq, plan):
    assert plan_batches(PROFILES, batch, seq) == plan


def test_plan_batches_cannot_chunk_a_sequence_that_is_too_long():
    with pytest.raises(NoProfileFits, match="batch 9, seq 17"):
        plan_batches(PROFILES, 9, 17)


def test_to_engine_dtype_narrows_ids_only_when_they_fit():
    ids = np.array([[101, 2023, 102]], np.int64)
    out = B.to_engine_dtype("input_ids", ids, np.int32)
    assert out.dtype == np.int32 and out.flags.c_contiguous and (out == ids).all()
    with pytest.raises(ValueError, match=r"input 'input_ids' holds 0\.\.4294967296, outside the engine's int32"):
        B.to_engine_dtype("input_ids", np.array([[0, 2**32]], np.int64), np.int32)
    with pytest.raises(ValueError, match="refusing to truncate"):
        B.to_engine_dtype("input_ids", ids.astype(np.float32), np.int64)


def test_to_engine_dtype_bool_and_layout():
    assert B.to_engine_dtype("flag", np.array([1, 0]), np.bool_).tolist() == [True, False]
    with pytest.raises(ValueError, match="other than 0/1"):
        B.to_engine_dtype("flag", np.array([2]), np.bool_)
    strided = np.zeros((2, 3, 4, 4), np.float32)[:, :, ::2, ::2]
    assert B.to_engine_dtype("pixel_values", strided, np.float32).flags.c_contiguous
    assert B.to_engine_dtype("pixel_values", strided, np.float16).dtype == np.float16
    ids = np.ones((2, 3), np.int64)
    assert B.to_engine_dtype("input_ids", ids, np.int64) is ids  # nothing to convert: no copy


def test_device_buffers_grow_geometrically_and_are_reused():
    assert B.grown_capacity(0, 0) == 1 and B.grown_capacity(0, 10) == 10
    assert B.grown_capacity(10, 10) is None and B.grown_capacity(10, 4) is None
    assert B.grown_capacity(10, 11) == 20 and B.grown_capacity(10, 50) == 50
    live: dict[int, int] = {}
    counter = iter(range(1, 100))

    def malloc(n: int) -> int:
        ptr = next(counter)
        live[ptr] = n
        return ptr

    buffers = B.DeviceBuffers(malloc, lambda ptr: live.pop(ptr))
    first = buffers.ensure("x", 100)
    assert buffers.ensure("x", 60) == first and buffers.ensure("x", 100) == first and buffers.allocations == 1
    grown = buffers.ensure("x", 150)
    assert grown != first and live == {grown: 200} and buffers.allocations == 2
    buffers.ensure("y", 8)
    buffers.release()
    assert live == {} and buffers.pointers == {}


# ----------------------------------------------------------------------------- fakes


def tiny_outputs(feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What `tests.test_tensorrt.make_tiny_onnx` computes, in numpy."""
    tokens = feeds["input_ids"].astype(np.float32) * feeds["attention_mask"].astype(np.float32)
    px = feeds["pixel_values"].astype(np.float32)
    b, c, h, w = px.shape
    patches = px.reshape(b, c, 7, h // 7, 7, w // 7).mean(axis=(3, 5)).mean(axis=1).reshape(b, 49)
    summary = tokens.sum(axis=1, keepdims=True) + (feeds["image_index"] >= 0).astype(np.float32)[:, None]
    return np.repeat(summary, 5, axis=1), tokens, patches


class DataType(enum.Enum):
    FLOAT, HALF, INT32, INT64, BOOL = range(5)


NPTYPE = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT32: np.int32,
          DataType.INT64: np.int64, DataType.BOOL: np.bool_}
# As TensorRT 8.6 would build it: int32 ids; one fp16 output to convert back.
TENSORS = {"input_ids": (True, DataType.INT32), "attention_mask": (True, DataType.INT32),
           "pixel_values": (True, DataType.FLOAT), "image_index": (True, DataType.INT64),
           "logits": (False, DataType.FLOAT), "token_scores": (False, DataType.FLOAT),
           "patch_scores": (False, DataType.HALF)}


def host_view(ptr: int, nbytes: int) -> np.ndarray:
    return np.frombuffer((ctypes.c_uint8 * nbytes).from_address(ptr), np.uint8)


def fake_modules(version: str = "10.7.0", gpu: tuple[bytes, int, int] = (b"Orin\0\0\0", 8, 7),
                 profiles: tuple = PROFILES, fail: str | None = None):
    """Fake `tensorrt` and `cuda.bindings.runtime`: device pointers are addresses of numpy buffers,
    the engine computes the tiny model from what is at its input addresses."""
    rec = types.SimpleNamespace(memory={}, mallocs=[], frees=0, copies=[], profiles=[], shapes=[], executed=[],
                                deserialized=0, streams_destroyed=0)

    class Err(enum.IntEnum):
        cudaSuccess = 0
        cudaErrorMemoryAllocation = 2

    ok = (Err.cudaSuccess,)
    cudart = types.ModuleType("cuda.bindings.runtime")
    cudart.cudaError_t = Err
    cudart.cudaMemcpyKind = types.SimpleNamespace(cudaMemcpyHostToDevice="H2D", cudaMemcpyDeviceToHost="D2H")
    cudart.cudaGetErrorName = lambda err: (Err.cudaSuccess, Err(err).name.encode())
    cudart.cudaGetErrorString = lambda err: (Err.cudaSuccess, b"out of memory")
    cudart.cudaSetDevice = lambda device: ok
    cudart.cudaGetDeviceProperties = lambda device: (Err.cudaSuccess, types.SimpleNamespace(
        name=gpu[0], major=gpu[1], minor=gpu[2]))
    cudart.cudaStreamCreate = lambda: (Err.cudaSuccess, 7)
    cudart.cudaStreamSynchronize = lambda stream: ok

    def stream_destroy(stream):
        rec.streams_destroyed += 1
        return ok

    def malloc(nbytes):
        if fail == "malloc":
            return (Err.cudaErrorMemoryAllocation, 0)
        buf = np.zeros(nbytes, np.uint8)
        rec.memory[buf.ctypes.data] = buf
        rec.mallocs.append(nbytes)
        return (Err.cudaSuccess, buf.ctypes.data)

    def free(ptr):
        del rec.memory[ptr]
        rec.frees += 1
        return ok

    def memcpy(dst, src, nbytes, kind, stream):
        device = dst if kind == "H2D" else src
        assert any(p <= device and device + nbytes <= p + b.nbytes for p, b in rec.memory.items()), "out of bounds"
        ctypes.memmove(dst, src, nbytes)
        rec.copies.append(kind)
        return ok

    cudart.cudaMalloc, cudart.cudaFree, cudart.cudaMemcpyAsync = malloc, free, memcpy
    cudart.cudaStreamDestroy = stream_destroy

    trt, _ = fake_tensorrt(version)  # the builder's fake (logger API), plus what the runtime uses
    severity = trt.ILogger.Severity
    trt.DataType = DataType
    trt.TensorIOMode = enum.Enum("TensorIOMode", "INPUT OUTPUT")
    trt.nptype = lambda dtype: NPTYPE[dtype]

    class Context:
        def __init__(self):
            self.profile, self.shapes, self.addresses = 0, {}, {}

        def set_optimization_profile_async(self, index, stream):
            assert isinstance(stream, int)
            rec.profiles.append(index)
            self.profile = index
            return True

        def set_input_shape(self, name, shape):
            r = profiles[self.profile].shapes[name]
            if not all(lo <= d <= hi for lo, d, hi in zip(r.min, shape, r.max)):
                return False
            self.shapes[name] = tuple(shape)
            return True

        def get_tensor_shape(self, name):
            b, s = self.shapes["input_ids"]
            return {"logits": (b, 5), "token_scores": (b, s), "patch_scores": (b, 49)}[name]

        def set_tensor_address(self, name, ptr):
            self.addresses[name] = ptr
            return True

        def _array(self, name, shape):
            dtype = np.dtype(NPTYPE[TENSORS[name][1]])
            nbytes = int(np.prod(shape)) * dtype.itemsize
            return host_view(self.addresses[name], nbytes).view(dtype).reshape(shape)

        def execute_async_v3(self, stream):
            feeds = {n: self._array(n, self.shapes[n]).copy() for n, (is_in, _) in TENSORS.items() if is_in}
            rec.executed.append({n: a.dtype for n, a in feeds.items()})
            for name, value in zip(("logits", "token_scores", "patch_scores"), tiny_outputs(feeds)):
                self._array(name, value.shape)[...] = value
            return True

    class Engine:
        num_io_tensors = len(TENSORS)
        num_optimization_profiles = len(profiles)

        def get_tensor_name(self, i):
            return list(TENSORS)[i]

        def get_tensor_mode(self, name):
            return trt.TensorIOMode.INPUT if TENSORS[name][0] else trt.TensorIOMode.OUTPUT

        def get_tensor_dtype(self, name):
            return TENSORS[name][1]

        def create_execution_context(self):
            return Context()

    class Runtime:
        def __init__(self, logger):
            self.logger = logger

        def deserialize_cuda_engine(self, data):
            rec.deserialized += 1
            if not data.startswith(b"FAKE"):
                self.logger.log(severity.ERROR, "the serialized engine is from another TensorRT version")
                return None
            return Engine()

    trt.Runtime = Runtime
    return trt, cudart, rec


@pytest.fixture
def fakes(monkeypatch):
    def install(**kwargs):
        trt, cudart, rec = fake_modules(**kwargs)
        cuda, bindings = types.ModuleType("cuda"), types.ModuleType("cuda.bindings")
        cuda.bindings, bindings.runtime = bindings, cudart  # type: ignore[attr-defined]
        for name, module in (("tensorrt", trt), ("cuda", cuda), ("cuda.bindings", bindings),
                             ("cuda.bindings.runtime", cudart)):
            monkeypatch.setitem(sys.modules, name, module)
        return rec
    return install


@pytest.fixture
def no_gpu_libraries(monkeypatch):
    for name in ("tensorrt", "cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart"):
        monkeypatch.setitem(sys.modules, name, None)  # `import` then fails even where installed


@pytest.fixture
def tiny_onnx(tmp_path) -> Path:
    pytest.importorskip("onnx", reason="onnx (export extra) is needed to write the test model")
    return make_tiny_onnx(tmp_path / "model.fp32.onnx", image_size=IMAGE)


def stub_bundle(folder: Path, onnx: Path, precision: str = "fp32") -> types.SimpleNamespace:
    """What `make_backend` reads from a bundle: its folder and a variant."""
    variant = Variant("fp32", onnx, precision, None, "gpu", {}, hash_file(onnx), onnx.stat().st_size)
    return types.SimpleNamespace(path=folder, variant=lambda name=None: variant)


def cache_engine(cache: Path, onnx: Path, *, version: str = "10.7.0", gpu: tuple[str, str] = ("Orin", "8.7"),
                 precision: str = "fp32", data: bytes = b"FAKE-ENGINE") -> Path:
    fields = EngineFields(hash_file(onnx), version, gpu[0], gpu[1], precision, PROFILES)
    return write_engine(cache, fields, data)


def make_feeds(batch: int, seq: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    mask = np.ones((batch, seq), np.int64)
    mask[0, seq // 2:] = 0
    return {"input_ids": rng.integers(0, 60, (batch, seq)).astype(np.int64), "attention_mask": mask,
            "pixel_values": rng.standard_normal((batch, 3, IMAGE, IMAGE)).astype(np.float32),
            "image_index": np.arange(batch, dtype=np.int64)}  # every post has a photo: K = batch


# ----------------------------------------------------------------------------- without the libraries


def test_backend_modules_import_without_tensorrt_or_cuda_python():
    code = ("import sys\nfor m in ('tensorrt', 'cuda', 'cuda.bindings', 'cuda.cudart'):\n    sys.modules[m] = None\n"
            "import crisislens.runtime.backends.trt, crisislens.runtime.backends\nprint('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


def test_auto_uses_onnxruntime_and_says_tensorrt_is_missing(tmp_path, tiny_onnx, no_gpu_libraries):
    backend, reason = make_backend(stub_bundle(tmp_path, tiny_onnx))
    assert isinstance(backend, OnnxBackend)
    assert reason == f"onnxruntime ({backend.providers[0]}); native TensorRT not used: TensorRT is not installed"


def test_forcing_tensorrt_without_it_says_how_to_get_it(tmp_path, tiny_onnx, no_gpu_libraries):
    with pytest.raises(TensorRTUnavailable) as info:
        make_backend(stub_bundle(tmp_path, tiny_onnx), prefer="tensorrt")
    message = str(info.value)
    assert message.startswith("TensorRT is not installed: install it from NVIDIA's index")
    assert "pip install tensorrt --extra-index-url https://pypi.nvidia.com" in message
    assert 'prefer="onnxruntime"' in message and "trtexec" not in message


def test_forcing_tensorrt_without_cuda_python_names_it(tmp_path, tiny_onnx, fakes, monkeypatch):
    fakes()
    for name in ("cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(TensorRTUnavailable, match="cuda-python is not installed: pip install cuda-python"):
        make_backend(stub_bundle(tmp_path, tiny_onnx), prefer="tensorrt")


def test_make_backend_argument_errors(tmp_path, tiny_onnx):
    with pytest.raises(ValueError, match="'cuda' is not one of: auto, tensorrt, onnxruntime"):
        make_backend(stub_bundle(tmp_path, tiny_onnx), prefer="cuda")
    with pytest.raises(ValueError, match="execution providers are onnxruntime's"):
        make_backend(stub_bundle(tmp_path, tiny_onnx), prefer="tensorrt", providers=["CPUExecutionProvider"])
    backend, reason = make_backend(stub_bundle(tmp_path, tiny_onnx), prefer="onnxruntime")
    assert isinstance(backend, OnnxBackend) and reason.endswith("; asked for")


# ----------------------------------------------------------------------------- fake TensorRT


def test_fake_engine_runs_like_onnxruntime_with_profiles_buffers_and_dtypes(tmp_path, tiny_onnx, fakes):
    rec = fakes()
    cache_engine(tmp_path / "engines", tiny_onnx)
    backend, reason = make_backend(stub_bundle(tmp_path, tiny_onnx))
    assert isinstance(backend, B.TensorRTBackend) and backend.name == "tensorrt"
    assert backend.providers == ["TensorRT (native)"]
    assert reason.startswith("native TensorRT: student.") and "TensorRT 10.7.0 on Orin (sm_87), fp32" in reason
    ort = OnnxBackend(tiny_onnx, providers=["CPUExecutionProvider"])

    for batch, seq, profile in ((3, 10, 1), (2, 16, 1), (1, 5, 0), (4, 12, 1)):
        feeds = make_feeds(batch, seq, seed=batch)
        got = backend.run(feeds)
        assert [a.shape for a in got] == [(batch, 5), (batch, seq), (batch, 49)]
        assert all(a.dtype == np.float32 for a in got)  # the fp16 patch_scores output comes back as float32
        for mine, theirs in zip(got, ort.run(feeds)):
            np.testing.assert_allclose(mine, theirs, rtol=1e-3, atol=1e-3)
        assert rec.profiles[-1] == profile
    assert rec.profiles == [1, 0, 1]  # switched only when the profile changed
    assert rec.executed[0]["input_ids"] == np.int32 and rec.executed[0]["image_index"] == np.int64
    # (3, 10) allocates all 7 tensors; (2, 16) grows the 3 sized by seq (ids, mask, token_scores);
    # (1, 5) fits; (4, 12) grows the 4 sized by batch alone (their seq-sized buffers had doubled).
    assert len(rec.mallocs) == 7 + 3 + 4 and rec.frees == 7
    backend.close()
    assert rec.memory == {} and rec.streams_destroyed == 1
    with pytest.raises(B.TensorRTRuntimeError, match="closed"):
        backend.run(make_feeds(1, 4))


def test_fake_batch_larger_than_every_profile_runs_in_chunks(tmp_path, tiny_onnx, fakes):
    rec = fakes()
    cache_engine(tmp_path, tiny_onnx)
    backend = B.TensorRTBackend.from_cache(tmp_path, tiny_onnx, "fp32")
    feeds = make_feeds(9, 8)
    for mine, expected in zip(backend.run(feeds), tiny_outputs(feeds)):
        np.testing.assert_allclose(mine, expected, rtol=1e-3, atol=1e-3)
    assert len(rec.executed) == 3 and rec.profiles == [1, 0]
    with pytest.raises(NoProfileFits, match="seq 17"):
        backend.run(make_feeds(1, 17))


@pytest.mark.parametrize(("built", "label"), [
    ({"version": "10.3.0"}, "TensorRT version"),
    ({"gpu": ("NVIDIA H100 80GB HBM3", "9.0")}, "GPU, compute capability"),
    ({"precision": "fp16"}, "precision"),
])
def test_fake_engine_for_another_machine_is_refused_before_loading(tmp_path, tiny_onnx, fakes, built, label):
    rec = fakes()
    cache_engine(tmp_path / "engines", tiny_onnx, **built)
    with pytest.raises(EngineMismatch) as info:
        make_backend(stub_bundle(tmp_path, tiny_onnx), prefer="tensorrt")
    message = str(info.value)
    assert f"(differs in: {label})" in message and "this is TensorRT 10.7.0 on Orin (sm_87), fp32" in message
    assert f"crisislens export tensorrt --onnx {tiny_onnx} --precision fp32 --cache-dir {tmp_path / 'engines'}" in message
    assert rec.deserialized == 0
    backend, reason = make_backend(stub_bundle(tmp_path, tiny_onnx))  # auto: falls back and says why
    assert isinstance(backend, OnnxBackend) and f"native TensorRT not used: student." in reason
    assert f"(differs in: {label})" in reason


def test_fake_engine_of_another_onnx_model_or_empty_cache(tmp_path, tiny_onnx, fakes):
    fakes()
    other = tmp_path / "other.onnx"
    other.write_bytes(b"another model")
    with pytest.raises(EngineMismatch, match="no cached student engine in"):
        B.TensorRTBackend.from_cache(tmp_path / "engines", tiny_onnx, "fp32")
    cache_engine(tmp_path / "engines", other)
    with pytest.raises(EngineMismatch, match=r"differs in: ONNX model\)") as info:
        B.TensorRTBackend.from_cache(tmp_path / "engines", tiny_onnx, "fp32")
    assert info.value.differing == ("onnx_sha256",)


def test_fake_replaced_or_truncated_engine_is_refused(tmp_path, tiny_onnx, fakes):
    rec = fakes()
    path = cache_engine(tmp_path, tiny_onnx)
    path.write_bytes(b"FAKE-ENGIN!")  # same size, other bytes
    with pytest.raises(EngineMismatch, match="sha256 is not the one its sidecar records"):
        B.TensorRTBackend.from_cache(tmp_path, tiny_onnx, "fp32")
    path.write_bytes(b"FAKE")
    with pytest.raises(EngineMismatch, match="4 bytes, the sidecar records 11"):
        B.TensorRTBackend.from_cache(tmp_path, tiny_onnx, "fp32")
    sidecar_path(path).write_text("{broken")
    with pytest.raises(EngineMismatch, match="no cached student engine"):  # no sidecar, no trust
        B.TensorRTBackend.from_cache(tmp_path, tiny_onnx, "fp32")
    assert rec.deserialized == 0


def test_fake_deserialise_failure_reports_tensorrt_log(tmp_path, tiny_onnx, fakes):
    fakes()
    cache_engine(tmp_path, tiny_onnx, data=b"not an engine")
    with pytest.raises(B.TensorRTRuntimeError, match="could not deserialise(.|\n)*from another TensorRT version"):
        B.TensorRTBackend.from_cache(tmp_path, tiny_onnx, "fp32")


def test_fake_cuda_errors_name_the_call(tmp_path, tiny_onnx, fakes):
    fakes(fail="malloc")
    cache_engine(tmp_path, tiny_onnx)
    backend = B.TensorRTBackend.from_cache(tmp_path, tiny_onnx, "fp32")
    with pytest.raises(B.TensorRTRuntimeError, match=r"cudaMalloc\(\d+ bytes\) failed: cudaErrorMemoryAllocation: "
                                                     "out of memory"):
        backend.run(make_feeds(1, 4))


def test_engine_with_another_signature_is_refused():
    tensors = {n: B.TensorInfo(n, True, np.dtype(np.int64)) for n in ("input_ids", "attention_mask")}
    with pytest.raises(B.TensorRTRuntimeError, match="not a student engine"):
        B.check_signature(Path("x.engine"), tensors)
    outputs = {n: B.TensorInfo(n, False, np.dtype(np.float32)) for n in ("logits", "token_scores", "patch_scores")}
    names = ("input_ids", "attention_mask", "pixel_values", "image_index")
    student = {n: B.TensorInfo(n, True, np.dtype(np.int64)) for n in names} | outputs
    B.check_signature(Path("x.engine"), student)  # exported before patch_keep
    B.check_signature(Path("x.engine"), student | {"patch_keep": B.TensorInfo("patch_keep", True, np.dtype(np.int64))})
    with pytest.raises(B.TensorRTRuntimeError, match="not a student engine"):
        B.check_signature(Path("x.engine"), student | {"extra": B.TensorInfo("extra", True, np.dtype(np.int64))})


def test_feeds_fill_patch_keep_for_graphs_that_take_it_and_leave_it_out_for_older_ones(tmp_path):
    from crisislens.runtime.backends.feeds import model_feeds, slice_feeds

    feeds = make_feeds(3, 6)
    names = ["input_ids", "attention_mask", "pixel_values", "image_index"]
    assert list(model_feeds(feeds, names, None)) == names
    filled = model_feeds(feeds, [*names, "patch_keep"], 49)
    assert filled["patch_keep"].shape == (3, 49) and filled["patch_keep"].dtype == np.int64
    assert int(filled["patch_keep"].min()) == 1
    with pytest.raises(KeyError, match="takes input 'token_type_ids'"):
        model_feeds(feeds, [*names, "token_type_ids"], None)
    keep = np.arange(3 * 49).reshape(3, 49) % 2
    part = slice_feeds({**feeds, "patch_keep": keep}, 1, 3)
    assert np.array_equal(part["patch_keep"], keep[1:3])
    # the ONNX Runtime backend over a graph with the input: removed patches score 0
    backend = OnnxBackend(make_tiny_onnx(tmp_path / "m.onnx", image_size=IMAGE, patch_keep=True))
    assert backend.patches == 49 and backend.input_names[-1] == "patch_keep"
    whole = backend.run(feeds)[2]
    cut = backend.run({**feeds, "patch_keep": keep})[2]
    assert np.array_equal(cut, whole * keep)


# ----------------------------------------------------------------------------- real TensorRT


def test_real_tensorrt_backend_matches_onnxruntime(tmp_path, tiny_onnx):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed here (needs NVIDIA's index or JetPack)")
    from crisislens.export import tensorrt as T
    from crisislens.runtime.backends.gpu import import_cudart

    try:
        import_cudart()
        T.probe_gpu()
    except (TensorRTUnavailable, T.GpuProbeError) as exc:
        pytest.skip(f"TensorRT is installed but cuda-python or a GPU is missing: {exc}")
    T.build_engine(tiny_onnx, tmp_path / "engines", "fp32", PROFILES, workspace_gb=0.5)
    backend, reason = make_backend(stub_bundle(tmp_path, tiny_onnx))
    assert isinstance(backend, B.TensorRTBackend), reason
    ort = OnnxBackend(tiny_onnx, providers=["CPUExecutionProvider"])
    for batch, seq in ((1, 16), (3, 7), (9, 12), (2, 3)):
        feeds = make_feeds(batch, seq, seed=seq)
        for mine, theirs in zip(backend.run(feeds), ort.run(feeds)):
            assert mine.dtype == np.float32
            np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=1e-3)
    backend.close()
