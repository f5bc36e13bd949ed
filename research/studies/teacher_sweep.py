"""Teacher training recipes on a GPU, text path -> research/results/teacher_sweep.{json,md}

Is the teacher's Macro-F1 held back by its CPU training budget (3 epochs, 4 of 6 MiniLM layers
frozen and cached, 8,000 HumAID rows an epoch), or by its backbone and data? This trains the
same teacher (`build_teacher`, `teacher_loss`, the same optimizer, schedule and class weights as
`crisislens distill train-teacher`) under several recipes and scores each epoch on CrisisMMD dev
and test; a recipe's test score is the one of its best dev epoch. Photos are left out (the
payload carries no image features: too large for the device machine), so every row is read as
text only, which is how 875 of the 955 test rows are read anyway; compare recipes with each
other, and with the same-run replica of the CPU recipe, not with research/results/v1/teacher.md.

Three steps, the middle one on a machine with a GPU:

    python research/studies/teacher_sweep.py prepare --out .gpu          # here: token ids + MiniLM weights, no text
    python research/studies/teacher_sweep.py run --payload .gpu --out $OUT --shard 0/4   # there, shards 0..3 at once
    python research/studies/teacher_sweep.py render --run 'COMMAND' results_*.json [--run ...] --out research/results

The payload (token ids and labels of CrisisMMD, HumAID and the Nepal rationale set, MiniLM's
weights in fp16 with only the word-embedding rows those ids use) stays out of git.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

SOURCES = ("crisismmd", "humaid", "rationales", "dev", "test", "crisislex")  # the last: zero-shot, never trained on


@dataclass(frozen=True)
class Recipe:
    name: str
    frozen_text_layers: int = 4
    epochs: int = 3
    patience: int = 2
    humaid_pool: str = "cpu"  # "cpu": the 24,000-row pool train-teacher cached before; "all"; "none"
    humaid_per_epoch: int = 8000
    lr_text: float = 3e-5
    lr_new: float = 2e-4
    weight_decay: float = 0.01
    seed: int = 13
    batch_size: int = 32


# In the order they run; the budget may stop the list early (the report says which ran).
RECIPES = (
    Recipe("cpu-recipe"),  # what train-teacher does (text only here)
    Recipe("all-layers-6ep", frozen_text_layers=0, epochs=6),
    Recipe("all-layers-6ep-all-humaid", frozen_text_layers=0, epochs=6, humaid_pool="all", humaid_per_epoch=24000),
    Recipe("cpu-recipe-seed14", seed=14),
    Recipe("cpu-recipe-6ep", epochs=6),
    Recipe("cpu-recipe-seed15", seed=15),
    Recipe("all-layers-6ep-no-humaid", frozen_text_layers=0, epochs=6, humaid_pool="none"),
    Recipe("all-layers-6ep-lr5e-5", frozen_text_layers=0, epochs=6, lr_text=5e-5),
    Recipe("all-layers-10ep", frozen_text_layers=0, epochs=10, patience=3),
    # second round, after the first showed CrisisMMD-only training scoring highest on dev
    Recipe("all-layers-6ep-no-humaid-seed14", frozen_text_layers=0, epochs=6, humaid_pool="none", seed=14),
    Recipe("all-layers-6ep-no-humaid-seed15", frozen_text_layers=0, epochs=6, humaid_pool="none", seed=15),
    Recipe("cpu-recipe-no-humaid-6ep", epochs=6, humaid_pool="none"),
    Recipe("cpu-recipe-no-humaid-6ep-seed14", epochs=6, humaid_pool="none", seed=14),
    Recipe("cpu-recipe-no-humaid-6ep-seed15", epochs=6, humaid_pool="none", seed=15),
    # fourth round, after the CPU teacher without HumAID scored lower zero-shot on CrisisLexT26:
    # how much HumAID keeps the zero-shot score (the payload now carries CrisisLexT26 too)
    Recipe("zs-humaid-none", epochs=6, humaid_pool="none"),
    Recipe("zs-humaid-2000", epochs=6, humaid_per_epoch=2000),
    Recipe("zs-humaid-8000", epochs=6),
)


# ----------------------------------------------------------------------------- prepare (here)


def prepare(out: Path, data_root: str | None, limit: int = 0) -> None:
    import torch

    from crisislens.distill import data as D
    from crisislens.distill.features import rationale_tokens
    from crisislens.distill.teacher import load_minilm
    from crisislens.distill.assembly import assemble
    from crisislens.distill.features import minilm_encoder
    from crisislens.distill.train_teacher import TrainConfig
    from crisislens.runtime.labels import label_index

    config = TrainConfig(data_root=str(D.cli_data_root(data_root)))
    root = D.resolve_data_root(config.data_root)
    cpu_sets = assemble(root, replace(config, humaid_pool=24000))  # the pool train-teacher used to cache
    all_sets = assemble(root, replace(config, humaid_pool=10**9))
    pool = {e.id for e in cpu_sets.train["humaid"]}
    groups = {"crisismmd": all_sets.train["crisismmd"], "humaid": all_sets.train["humaid"],
              "rationales": all_sets.train["rationales"], "dev": all_sets.dev, "test": all_sets.test,
              "crisislex": D.load_crisislex(root)}
    encoder = minilm_encoder(config)
    ids, rats, lengths, has_rat, labels, source, in_pool = [], [], [], [], [], [], []
    for s, rows in groups.items():
        rows = [e for e in rows if e.text and e.label is not None]
        if limit:
            rows = rows[:limit]
        for b in range(0, len(rows), 256):
            chunk = rows[b : b + 256]
            batch = encoder.encode_batch([e.text for e in chunk])
            for j, e in enumerate(chunk):
                n = int(batch.attention_mask[j].sum())
                r = rationale_tokens(e, batch.cleaned[j], batch.offsets[j][:n])
                ids.append(batch.input_ids[j, :n].astype(np.uint16))
                rats.append((r if r is not None else np.zeros(n, np.uint8))[:n].astype(np.uint8))
                lengths.append(n)
                has_rat.append(r is not None)
                labels.append(label_index(e.label))
                source.append(SOURCES.index(s))
                in_pool.append(s != "humaid" or e.id in pool)
        print(f"{s}: {len(rows)} rows", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    flat = np.concatenate(ids)
    np.savez_compressed(out / "rows.npz", ids=flat, rationale=np.concatenate(rats), lengths=np.array(lengths, np.int32),
                        has_rationale=np.array(has_rat), labels=np.array(labels, np.int8),
                        source=np.array(source, np.int8), in_cpu_pool=np.array(in_pool))
    bert = load_minilm()
    state = {k: v.detach().to(torch.float16) for k, v in bert.state_dict().items()}
    used = np.unique(flat).astype(np.int64)
    key = "embeddings.word_embeddings.weight"
    vocab = state[key].shape[0]
    state[key] = state[key][torch.from_numpy(used)].clone()
    torch.save({"state": state, "used_ids": torch.from_numpy(used), "vocab": vocab,
                "config": bert.config.to_dict()}, out / "minilm.pt")
    print(f"payload in {out}: {len(lengths)} rows, {len(used)} of {vocab} word embeddings", file=sys.stderr)


# ----------------------------------------------------------------------------- run (on the GPU)


@dataclass
class Rows:
    ids: list[np.ndarray]
    rationale: list[np.ndarray]
    has_rationale: np.ndarray
    labels: np.ndarray
    source: np.ndarray
    in_cpu_pool: np.ndarray

    @classmethod
    def load(cls, path: Path) -> Rows:
        z = np.load(path)
        cuts = np.cumsum(z["lengths"])[:-1]
        return cls(np.split(z["ids"].astype(np.int64), cuts), np.split(z["rationale"], cuts), z["has_rationale"],
                   z["labels"].astype(np.int64), z["source"], z["in_cpu_pool"])

    def where(self, name: str) -> list[int]:
        return [int(i) for i in np.flatnonzero(self.source == SOURCES.index(name))]


def load_bert(payload: Path) -> Any:
    import torch
    from transformers import BertConfig, BertModel

    saved = torch.load(payload / "minilm.pt", weights_only=True)
    config = {k: v for k, v in saved["config"].items() if k not in ("architectures", "transformers_version")}
    bert = BertModel(BertConfig(**config))
    state = {k: v.float() for k, v in saved["state"].items()}
    key = "embeddings.word_embeddings.weight"
    full = torch.zeros(int(saved["vocab"]), state[key].shape[1])
    full[saved["used_ids"]] = state[key]
    state[key] = full
    missing, unexpected = bert.load_state_dict(state, strict=False)
    missing = [k for k in missing if "position_ids" not in k]
    if missing or unexpected:
        raise RuntimeError(f"MiniLM weights do not fit: missing {missing}, unexpected {unexpected}")
    return bert


def batch_inputs(rows: Rows, index: list[int], device: Any) -> tuple[Any, Any, Any, Any]:
    import torch

    from crisislens.distill.teacher import TeacherInputs

    n = max(len(rows.ids[i]) for i in index)
    ids = np.zeros((len(index), n), np.int64)
    mask = np.zeros_like(ids)
    rat = np.zeros((len(index), n), np.float32)
    for j, i in enumerate(index):
        k = len(rows.ids[i])
        ids[j, :k], mask[j, :k], rat[j, :k] = rows.ids[i], 1, rows.rationale[i]
    t = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
    inputs = TeacherInputs(input_ids=t(ids), attention_mask=t(mask),
                           image_present=torch.zeros(len(index), dtype=torch.bool, device=device))
    return inputs, t(rat), t(rows.has_rationale[index]), t(rows.labels[index])


def evaluate(model: Any, rows: Rows, index: list[int], device: Any) -> dict[str, float]:
    """Macro-F1 and accuracy of the rationale head, Macro-F1 of the full-input head, on `index`."""
    import torch

    from crisislens.runtime.labels import LABEL_NAMES
    from crisislens.evaluation.metrics import classification_report

    model.eval()
    order = sorted(index, key=lambda i: len(rows.ids[i]))
    pred, full = {}, {}
    with torch.no_grad():
        for b in range(0, len(order), 256):
            chunk = order[b : b + 256]
            inputs, _, _, _ = batch_inputs(rows, chunk, device)
            out = model(inputs)
            for i, p, f in zip(chunk, out.logits.argmax(-1).tolist(), out.full_logits.argmax(-1).tolist()):
                pred[i], full[i] = p, f
    gold = [LABEL_NAMES[int(rows.labels[i])] for i in index]
    rationale = classification_report(gold, [LABEL_NAMES[pred[i]] for i in index])
    full_head = classification_report(gold, [LABEL_NAMES[full[i]] for i in index])
    return {"macro_f1": rationale.macro_f1, "accuracy": rationale.accuracy, "full_head_macro_f1": full_head.macro_f1}


def teacher_config(bert: Any, recipe: Recipe) -> Any:
    """The teacher's config, its widths read from the MiniLM given (the real one: the defaults)."""
    from crisislens.distill.teacher import TeacherConfig

    c = bert.config
    default = TeacherConfig()
    if (c.hidden_size, c.num_hidden_layers) == (default.hidden, default.text_layers):
        return TeacherConfig(frozen_text_layers=recipe.frozen_text_layers)
    return TeacherConfig(hidden=c.hidden_size, text_layers=c.num_hidden_layers,
                         frozen_text_layers=min(recipe.frozen_text_layers, c.num_hidden_layers - 1),
                         fusion_layers=1, fusion_heads=c.num_attention_heads, fusion_ffn=4 * c.hidden_size)


def train_recipe(recipe: Recipe, rows: Rows, bert: Any, device: Any, deadline: float, log: Any,
                 on_epoch: Any = None) -> dict[str, Any]:
    """Train one recipe until it ends, stops early or passes `deadline`; `on_epoch(result)` after each epoch."""
    import torch

    from crisislens.distill.teacher import LossWeights, build_teacher, teacher_loss
    from crisislens.distill.loop import (WarmupLinear, class_weights, length_batches, make_optimizer, optimizer_step,
                                         set_seed)
    from crisislens.runtime.labels import LABEL_NAMES

    set_seed(recipe.seed)
    config = teacher_config(bert, recipe)
    model = build_teacher(config, bert=copy.deepcopy(bert)).to(device)
    optimizer = make_optimizer(model, model.backbone.text, recipe)
    humaid = rows.where("humaid")
    if recipe.humaid_pool == "cpu":
        humaid = [i for i in humaid if rows.in_cpu_pool[i]]
    elif recipe.humaid_pool == "none":
        humaid = []
    fixed = rows.where("crisismmd") + rows.where("rationales")
    per_epoch = min(recipe.humaid_per_epoch, len(humaid))
    weights = class_weights([LABEL_NAMES[int(rows.labels[i])] for i in fixed + humaid]).to(device)
    steps = (len(fixed) + per_epoch + recipe.batch_size - 1) // recipe.batch_size
    schedule = WarmupLinear(optimizer, steps, recipe.epochs)
    dev, test, zero_shot = rows.where("dev"), rows.where("test"), rows.where("crisislex")
    result: dict[str, Any] = {"recipe": asdict(recipe), "train_rows_per_epoch": len(fixed) + per_epoch,
                              "text_layers": config.text_layers, "frozen_text_layers": config.frozen_text_layers,
                              "humaid_pool_rows": len(humaid), "epochs": [], "complete": False}
    best, bad = -1.0, 0
    for epoch in range(recipe.epochs):
        if time.monotonic() > deadline:
            result["stopped"] = "time budget"
            break
        t0 = time.monotonic()
        rng = random.Random(recipe.seed * 1000 + epoch)
        chosen = fixed + rng.sample(humaid, per_epoch)
        rng.shuffle(chosen)
        batches = length_batches(chosen, lambda i: len(rows.ids[i]), recipe.batch_size)  # as train-teacher does
        rng.shuffle(batches)
        model.train()
        sums: Counter[str] = Counter()
        for step, index in enumerate(batches):
            schedule.set(epoch, step)
            inputs, rationale, has_rat, labels = batch_inputs(rows, index, device)
            out = model(inputs)
            content = model.content_mask(inputs.input_ids, inputs.attention_mask)
            loss, parts = teacher_loss(out, labels, rationale, has_rat, content, LossWeights(), weights)
            optimizer_step(model, optimizer, loss, parts, sums)
        scores = {"epoch": epoch + 1, "seconds": round(time.monotonic() - t0, 1),
                  "train_ce": sums["ce"] / max(sums["n"], 1),
                  "dev": evaluate(model, rows, dev, device),
                  "test": evaluate(model, rows, test, device)}
        if zero_shot:
            scores["crisislex"] = evaluate(model, rows, zero_shot, device)
        result["epochs"].append(scores)
        print(f"{recipe.name} epoch {epoch + 1}: dev {scores['dev']['macro_f1']:.4f} test {scores['test']['macro_f1']:.4f} "
              f"({scores['seconds']} s)", file=log, flush=True)
        if on_epoch is not None:
            on_epoch(result)
        if scores["dev"]["macro_f1"] > best:
            best, bad = scores["dev"]["macro_f1"], 0
        else:
            bad += 1
            if bad >= recipe.patience:
                result["stopped"] = "early stopping"
                break
    else:
        result["complete"] = True
    if result.get("stopped") == "early stopping":
        result["complete"] = True
    result["best"] = best_epoch(result)
    return result


def best_epoch(result: dict[str, Any]) -> dict[str, Any] | None:
    """The epoch with the best dev Macro-F1 (its test scores are the recipe's)."""
    if not result["epochs"]:
        return None
    pick = max(result["epochs"], key=lambda e: e["dev"]["macro_f1"])
    return {"epoch": pick["epoch"], "dev": pick["dev"], "test": pick["test"], "crisislex": pick.get("crisislex")}


def run(payload: Path, out: Path, budget_s: float, only: list[str] | None = None,
        device_name: str | None = None, shard: tuple[int, int] = (0, 1)) -> dict[str, Any]:
    """Train the recipes (those in `only`, else all; shard k of n takes every n-th from the k-th)
    until `budget_s` is spent; results go to <out>/results_<k>.json after every recipe."""
    import torch

    started = time.monotonic()
    deadline = started + budget_s
    device = torch.device(device_name or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    rows = Rows.load(payload / "rows.npz")
    bert = load_bert(payload)
    import transformers

    results: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "transformers": transformers.__version__, "budget_s": budget_s,
        "rows": {s: len(rows.where(s)) for s in SOURCES}, "recipes": [], "not_run": []}
    out.mkdir(parents=True, exist_ok=True)
    recipes = [r for r in RECIPES if not only or r.name in only][shard[0] :: shard[1]]
    path = out / f"results_{shard[0]}.json"
    for recipe in recipes:
        if time.monotonic() > deadline:
            results["not_run"].append(recipe.name)
            continue
        def save(partial: dict[str, Any]) -> None:  # an unfinished recipe is kept too (complete: false)
            results["seconds"] = round(time.monotonic() - started, 1)
            path.write_text(json.dumps({**results, "recipes": [*results["recipes"], partial]}, indent=1))

        results["recipes"].append(train_recipe(recipe, rows, bert, device, deadline, sys.stderr, save))
        results["seconds"] = round(time.monotonic() - started, 1)
        path.write_text(json.dumps(results, indent=1))
    results["seconds"] = round(time.monotonic() - started, 1)
    path.write_text(json.dumps(results, indent=1))
    return results


def merge(runs: list[tuple[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    """One result from several device runs (each: its command and its shards' files), recipes in
    `RECIPES` order; a recipe run again later replaces its earlier, shorter run."""
    order = [r.name for r in RECIPES]
    by_name: dict[str, dict[str, Any]] = {}
    for i, (_, parts) in enumerate(runs):
        for part in parts:
            for r in part["recipes"]:
                old = by_name.get(r["recipe"]["name"])
                if old is None or len(r["epochs"]) >= len(old["epochs"]):
                    by_name[r["recipe"]["name"]] = {**r, "run": i + 1}
    first = runs[0][1][0]
    return {
        "device": first["device"], "torch": first["torch"], "transformers": first["transformers"], "rows": first["rows"],
        "runs": [{"command": command, "processes": len(parts), "budget_s": parts[0]["budget_s"],
                  "seconds": max(p.get("seconds", 0.0) for p in parts)} for command, parts in runs],
        "recipes": sorted(by_name.values(), key=lambda r: order.index(r["recipe"]["name"])),
        "not_run": [n for n in order if n not in by_name],
    }


# ----------------------------------------------------------------------------- render (here)


def to_markdown(results: dict[str, Any], prov: dict[str, Any]) -> str:
    lines = ["# Teacher training recipes on a GPU (text path)", "",
             f"On {results['device']} (torch {results['torch']}, transformers {results['transformers']}), "
             f"{len(results['runs'])} runs; rendered by `{prov['command']}` at commit {prov['git_commit'][:7]} · "
             f"{prov['created']}.", ""]
    for i, run_ in enumerate(results["runs"], 1):
        lines.append(f"- run {i}: `{run_['command']}` ({run_['processes']} processes sharing the GPU, "
                     f"{run_['seconds']} s of a {run_['budget_s']:.0f} s budget)")
    lines += ["",
             "The teacher of `crisislens distill train-teacher` (same model, losses, optimizer, schedule and class "
             "weights), trained under each recipe with every row read as text only (no photo features travel to "
             "the GPU machine). Test (and CrisisLexT26, 26 crises never trained on, measured in run 4 only) are the "
             "scores of the recipe's best dev epoch. Rows: "
             + ", ".join(f"{k} {v:,}" for k, v in results["rows"].items()) + ".", "",
             "| recipe | run | MiniLM layers trained | epochs run (best) | HumAID pool / per epoch | lr text | seed | "
             "dev Macro-F1 | test Macro-F1 | test accuracy | test full-input head Macro-F1 | "
             "CrisisLexT26 Macro-F1 / accuracy (zero-shot) | s per epoch |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["recipes"]:
        rec, best = r["recipe"], best_epoch(r)
        if not best:
            continue
        per = np.mean([e["seconds"] for e in r["epochs"]])
        lex = best.get("crisislex")
        zero_shot = f"{lex['macro_f1']:.4f} / {lex['accuracy']:.4f}" if lex else "–"
        note = {"early stopping": ", early stop", "time budget": ", budget spent"}.get(r.get("stopped", ""), "")
        layers = r.get("text_layers", 6)  # results written before this field: MiniLM-L6
        trained = layers - r.get("frozen_text_layers", rec["frozen_text_layers"])
        lines.append(f"| {rec['name']} | {r['run']} | {trained} of {layers} | {len(r['epochs'])} ({best['epoch']}{note}) | "
                     f"{r['humaid_pool_rows']:,} / {min(rec['humaid_per_epoch'], r['humaid_pool_rows']):,} | "
                     f"{rec['lr_text']:g} | {rec['seed']} | {best['dev']['macro_f1']:.4f} | {best['test']['macro_f1']:.4f} | "
                     f"{best['test']['accuracy']:.4f} | {best['test']['full_head_macro_f1']:.4f} | {zero_shot} | {per:.1f} |")
    if results["not_run"]:
        lines += ["", f"Not run (budget spent): {', '.join(results['not_run'])}."]
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in results["recipes"]:
        if r["complete"] and r["epochs"]:
            groups.setdefault(r["recipe"]["name"].split("-seed")[0], []).append(best_epoch(r))  # type: ignore[arg-type]
    seeded = {k: v for k, v in groups.items() if len(v) > 1}
    if seeded:
        lines += ["", "Over seeds (the same recipe with seeds 13, 14, 15; each at its best dev epoch):", "",
                  "| recipe | seeds | dev Macro-F1 mean | test Macro-F1 mean (min to max) | test accuracy mean |",
                  "|---|---|---|---|---|"]
        for name, bests in seeded.items():
            test = [b["test"]["macro_f1"] for b in bests]
            lines.append(f"| {name} | {len(bests)} | {np.mean([b['dev']['macro_f1'] for b in bests]):.4f} | "
                         f"{np.mean(test):.4f} ({min(test):.4f} to {max(test):.4f}) | "
                         f"{np.mean([b['test']['accuracy'] for b in bests]):.4f} |")
    lines += ["", "Per epoch (dev / test Macro-F1):", ""]
    for r in results["recipes"]:
        trace = ", ".join(f"{e['dev']['macro_f1']:.3f} / {e['test']['macro_f1']:.3f}" for e in r["epochs"])
        lines.append(f"- {r['recipe']['name']}: {trace}")
    return "\n".join(lines) + "\n"


def render(runs: list[list[str]], out: Path) -> None:
    from crisislens.runtime.reports import provenance, write_report

    results = merge([(command, [json.loads(Path(f).read_text()) for f in files]) for command, *files in runs])
    files = sum(len(files) for _, *files in runs)
    prov = provenance(f"python research/studies/teacher_sweep.py render --run COMMAND FILE... ({len(runs)} runs, {files} "
                      f"results files) --out {out}")
    json_path, md_path = write_report("teacher_sweep", {"provenance": prov, **results}, to_markdown(results, prov), out)
    print(f"wrote {json_path} and {md_path}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--data-root", default=None)
    p.add_argument("--limit", type=int, default=0, help="rows per source (0 = all; small for a dry run)")
    r = sub.add_parser("run")
    r.add_argument("--payload", type=Path, required=True)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--budget-s", type=float, default=420)
    r.add_argument("--only", nargs="*", default=None)
    r.add_argument("--device", default=None)
    r.add_argument("--shard", default="0/1", help="k/n: run every n-th recipe from the k-th (n processes share the GPU)")
    d = sub.add_parser("render")
    d.add_argument("--run", nargs="+", action="append", required=True, metavar="COMMAND FILE",
                   help="one device run: the command it ran, then its shards' results_<k>.json (repeatable)")
    d.add_argument("--out", type=Path, default=Path("research/results"))
    args = parser.parse_args(argv)
    if args.step == "prepare":
        prepare(args.out, args.data_root, args.limit)
    elif args.step == "run":
        k, n = (int(x) for x in args.shard.split("/"))
        run(args.payload, args.out, args.budget_s, args.only, args.device, (k, n))
    else:
        render(args.run, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
