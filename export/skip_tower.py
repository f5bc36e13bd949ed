"""Graph surgery: the image tower behind an `If`, so a batch without a usable photo skips it.

The exported student runs its image tower on a zero placeholder photo when no post of the call
has one (the graph needs at least one image; the placeholder is masked out afterwards). That is
a fifth of a text-only call for nothing. Here the tower's nodes move into the `then` branch of an
`If` on `max(image_index) >= 0`; the `else` branch is a constant: the tower's own output on the
placeholder, computed once by ONNX Runtime from the same graph. Everything after the tower is
untouched, so a text-only call computes the same numbers as before (bit for bit on the CPU; the
dynamic-INT8 scales see the same patch tokens), and a call with photos runs the same nodes. The
weights stay in one file (the branch reads them from the outer graph): the model grows by the
constant only.

`crisislens export skip-tower --bundle DIR` rewrites a bundle's variants this way, checks every
variant's outputs against the original on text-only and photo feeds, and updates the manifest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from crisislens.runtime.backends.ort import session_feeds
from crisislens.runtime.signature import OUTPUT_NAMES

COND = "has_photo__skip_tower"
TOWER_INPUT = "pixel_values"
INDEX_INPUT = "image_index"


def tower_frontier(graph: Any, source: str = TOWER_INPUT) -> tuple[list[Any], list[str]]:
    """The nodes that depend on `source` and on no other graph input (the tower), in graph order,
    and the tensors they produce that the rest of the graph reads (the tower's outputs)."""
    inputs = {i.name for i in graph.input} - {source}
    initializers = {i.name for i in graph.initializer}
    tainted: set[str] = {source}  # tensors computed from the photo alone
    other: set[str] = set(inputs)  # tensors that also need another input
    tower = []
    for node in graph.node:
        used = [t for t in node.input if t]
        if any(t in other for t in used):
            other.update(node.output)
        elif any(t in tainted for t in used):
            tainted.update(node.output)
            tower.append(node)
        elif all(t in initializers or t in tainted for t in used):
            # constants feed both sides: keep them outside, read from the outer scope
            continue
    produced = {o for n in tower for o in n.output}
    tower_names = {n.name for n in tower}
    read_outside = {t for n in graph.node if n.name not in tower_names for t in n.input}
    read_outside.update(o.name for o in graph.output)
    frontier = [t for n in tower for t in n.output if t in read_outside and t in produced]
    return tower, frontier


def skip_tower(model: Any, placeholder_outputs: Sequence[np.ndarray]) -> Any:
    """A copy of `model` whose tower runs only when some post has a photo; otherwise the tower's
    outputs are `placeholder_outputs` (its outputs on the zero placeholder, in `tower_frontier`
    order)."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    if any(n.op_type == "If" and n.input[0] == COND for n in graph.node):
        raise ValueError("the image tower is already behind an If")
    tower, frontier = tower_frontier(graph)
    if not tower or not frontier:
        raise ValueError(f"no image tower found below {TOWER_INPUT!r}")
    if len(frontier) != len(placeholder_outputs):
        raise ValueError(f"{len(frontier)} tower outputs, {len(placeholder_outputs)} placeholder values")
    tower_names = {n.name for n in tower}
    rest = [n for n in graph.node if n.name not in tower_names]
    inner = {t: f"{t}__tower" for t in frontier}

    then_nodes = []
    for n in tower:
        copy = onnx.NodeProto.FromString(n.SerializeToString())
        copy.output[:] = [inner.get(o, o) for o in copy.output]
        copy.input[:] = [inner.get(i, i) for i in copy.input]
        then_nodes.append(copy)

    def outputs(names: Sequence[str], suffix: str) -> list[Any]:
        out = []
        for t, value in zip(names, placeholder_outputs):
            elem = helper.np_dtype_to_tensor_dtype(value.dtype)
            out.append(helper.make_tensor_value_info(f"{t}{suffix}", elem, None))
        return out

    # The weights only the tower reads move into the branch: ONNX Runtime then optimises the tower
    # as it did at the top level (its layout and fusion passes only rewrite a graph's own weights).
    read_by_rest = {t for n in rest for t in n.input} | {o.name for o in graph.output}
    own = [i for i in graph.initializer if i.name not in read_by_rest and any(i.name in n.input for n in tower)]
    own_names = {i.name for i in own}
    shared = [i for i in graph.initializer if i.name not in own_names]
    del graph.initializer[:]
    graph.initializer.extend(shared)
    then_graph = helper.make_graph(then_nodes, "image_tower", [], outputs(frontier, "__tower"), initializer=own)
    else_nodes = [
        helper.make_node(
            "Constant",
            [],
            [f"{t}__placeholder"],
            value=numpy_helper.from_array(np.ascontiguousarray(v), f"{t}__placeholder_value"),
        )
        for t, v in zip(frontier, placeholder_outputs)
    ]
    else_graph = helper.make_graph(else_nodes, "placeholder_tower", [], outputs(frontier, "__placeholder"))
    cond_nodes = [
        helper.make_node("ReduceMax", [INDEX_INPUT], ["max_index__skip_tower"], keepdims=0),
        helper.make_node(
            "Constant", [], ["zero__skip_tower"], value=numpy_helper.from_array(np.array(0, np.int64), "zero")
        ),
        helper.make_node("GreaterOrEqual", ["max_index__skip_tower", "zero__skip_tower"], [COND]),
        helper.make_node("If", [COND], list(frontier), then_branch=then_graph, else_branch=else_graph),
    ]
    # the If first, so its outputs exist before the nodes that read them (graph order = topological)
    del graph.node[:]
    graph.node.extend(cond_nodes + rest)
    produced_in_tower = {o for n in tower for o in n.output} - set(frontier)
    keep = [v for v in graph.value_info if v.name not in produced_in_tower]
    del graph.value_info[:]
    graph.value_info.extend(keep)
    return model


def placeholder_feeds(size: int) -> dict[str, np.ndarray]:
    """A text-only call as the engine makes it: one post, one zero placeholder photo, index -1."""
    return {
        "input_ids": np.array([[101, 2023, 102]], np.int64),
        "attention_mask": np.ones((1, 3), np.int64),
        "pixel_values": np.zeros((1, 3, size, size), np.float32),
        "image_index": np.full(1, -1, np.int64),
    }


def tower_outputs_on_placeholder(model: Any, size: int, session_options: Any = None) -> list[np.ndarray]:
    """The tower's outputs on the zero placeholder, computed by ONNX Runtime from `model` itself
    (the frontier tensors made graph outputs), so the constant is what the runtime computed."""
    import onnx
    import onnxruntime as ort
    from onnx import helper

    _, frontier = tower_frontier(model.graph)
    probe = onnx.ModelProto.FromString(model.SerializeToString())
    for t in frontier:
        probe.graph.output.append(helper.make_empty_tensor_value_info(t))
        probe.graph.output[-1].type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    session = ort.InferenceSession(probe.SerializeToString(), session_options, providers=["CPUExecutionProvider"])
    values = session.run(frontier, session_feeds(session, placeholder_feeds(size)))
    return [np.asarray(v) for v in values]


def check_same(original: bytes, rewritten: bytes, feeds: Sequence[dict[str, np.ndarray]], options: Any) -> float:
    """Largest absolute difference of any output between the two models over `feeds`."""
    import onnxruntime as ort

    a = ort.InferenceSession(original, options, providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(rewritten, options, providers=["CPUExecutionProvider"])
    worst = 0.0
    for f in feeds:
        fa = session_feeds(a, f)
        for x, y in zip(a.run(list(OUTPUT_NAMES), fa), b.run(list(OUTPUT_NAMES), fa)):
            if x.shape != y.shape:
                raise ValueError(f"output shape {y.shape} instead of {x.shape}")
            worst = max(worst, float(np.max(np.abs(x.astype(np.float64) - y.astype(np.float64)), initial=0.0)))
    return worst


def rewrite_bundle(bundle_dir: Path, feeds: Sequence[dict[str, np.ndarray]], atol: float = 1e-5) -> dict[str, Any]:
    """Put every variant's tower of the bundle at `bundle_dir` behind an If (skipping variants
    already done), check outputs on `feeds` within `atol`, rewrite the files and the manifest's
    hashes. Returns {variant: {"max_abs_diff": ..., "bytes": ...}}."""
    import json

    import onnx

    from crisislens.runtime.backends.ort import session_options
    from crisislens.runtime.bundle import load_bundle
    from crisislens.runtime.files import atomic_write

    bundle = load_bundle(bundle_dir)
    size = bundle.image_config.size
    manifest = json.loads((bundle_dir / "manifest.json").read_text(encoding="utf-8"))
    done: dict[str, Any] = {}
    for name, variant in bundle.variants.items():
        original = variant.path.read_bytes()
        model = onnx.load_from_string(original)
        if any(n.op_type == "If" for n in model.graph.node):
            done[name] = {"skipped": "already has an If"}
            continue
        options = session_options(variant.quantization, threads=1)
        values = tower_outputs_on_placeholder(model, size, options)
        rewritten = skip_tower(model, values).SerializeToString()
        diff = check_same(original, rewritten, feeds, options)
        if diff > atol:
            raise ValueError(f"{name}: outputs moved by {diff:g} (> {atol:g}); the bundle is left as it was")
        rel = variant.path.name
        atomic_write(variant.path, rewritten)
        manifest["files"][rel] = {"sha256": hashlib.sha256(rewritten).hexdigest(), "bytes": len(rewritten)}
        done[name] = {"max_abs_diff": diff, "bytes": len(rewritten), "was_bytes": len(original)}
    atomic_write(bundle_dir / "manifest.json", (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode())
    return done


def check_feeds(bundle_dir: Path, inputs: Sequence[Path], image_root: Path | None, posts: int = 48) -> list[Any]:
    """Feeds the engine builds from real posts: each post alone, and mixed batches of 8, so the
    text-only branch, the photo branch and their mix are all checked, with and without patches
    removed (`patch_keep`)."""
    from crisislens.runtime.bundle import load_bundle
    from crisislens.runtime.engine import Engine
    from crisislens.runtime.readers import read_posts

    engine = Engine(load_bundle(bundle_dir), threads=1)
    found = read_posts(list(inputs), image_root=image_root).posts
    text = [p for p in found if p.image is None][: posts // 2]
    photo = [p for p in found if p.image is not None][: posts // 2]
    mixed = [p for pair in zip(text, photo) for p in pair]
    feeds = [engine.prepare([p]).feeds for p in mixed]
    feeds += [engine.prepare(mixed[i : i + 8]).feeds for i in range(0, len(mixed), 8)]
    feeds += [engine.prepare(text[i : i + 8]).feeds for i in range(0, len(text), 8)]
    # and the deletion test's feeds: every other patch removed as a token (graphs that take
    # `patch_keep`; others ignore it)
    cells = engine.grid * engine.grid
    for f in feeds[len(mixed) : len(mixed) + 2]:
        keep = np.ones((len(f["image_index"]), cells), np.int64)
        keep[:, ::2] = 0
        feeds.append({**f, "patch_keep": keep})
    return feeds


__all__ = ["check_feeds", "rewrite_bundle", "skip_tower", "tower_frontier", "tower_outputs_on_placeholder"]
