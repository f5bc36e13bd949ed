"""The bench's report: the speed-up over the peer, the ratios to a baseline bundle, the Markdown
table (one row per backend x precision) and the chart. It reports measurements; which of them
meet an issue's targets is said in the issue, not here.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from crisislens.evaluation.bench import PEER_ROW, speed_rows
from crisislens.runtime.markdown import md_table


def speedups(result: dict[str, Any], peer_row: str = PEER_ROW) -> dict[str, dict[str, Any]]:
    """Per CPU INT8 row, the peer's batch-1 text+image p50 over the row's: `alternating`, the
    median over the alternating rounds of the ratio within each round (None without them), and
    `separate`, from the rows' own runs minutes apart."""
    rows = {r["name"]: r for r in result["rows"] if r.get("status") == "ok"}
    peer = rows.get(peer_row)
    rounds = (result.get("alternating") or {}).get("p50_ms", {})
    out: dict[str, dict[str, Any]] = {}
    for name in speed_rows(result["rows"]):
        if peer is None:
            continue
        separate = peer["latency_batch1_text_image"]["p50"] / rows[name]["latency_batch1_text_image"]["p50"]
        pairs = [p / m for p, m in zip(rounds.get(peer_row, []), rounds.get(name, [])) if p and m]
        out[name] = {
            "alternating": statistics.median(pairs) if pairs else None,
            "per_round": pairs,
            "min": min(pairs) if pairs else None,
            "max": max(pairs) if pairs else None,
            "separate": separate,
        }
    return out


def baseline_ratios(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """For each `<label>:ort-<variant>` row (the same variant of a baseline bundle, `--against`),
    its batch-1 text-only p50 over ours, round by round: median, min, max."""
    rounds = (result.get("alternating") or {}).get("p50_text_only_ms", {})
    out: dict[str, dict[str, Any]] = {}
    for name, theirs in rounds.items():
        ours = name.partition(":")[2]
        if ":" not in name or ours not in rounds:
            continue
        pairs = [b / a for b, a in zip(theirs, rounds[ours]) if a and b]
        if pairs:
            out[ours] = {
                "baseline": name,
                "per_round": pairs,
                "median": statistics.median(pairs),
                "min": min(pairs),
                "max": max(pairs),
            }
    return out


def to_markdown(result: dict[str, Any], provenance: dict[str, Any]) -> str:
    m, b = result["machine"], result["batch"]
    lines = [
        "# Benchmark: backends x precisions on this machine",
        "",
        f"Command: `{provenance['command']}` · commit {provenance['git_commit']} · {provenance['created']}.",
        f"Machine: {m['cpu']} ({m['cpu_count']} cores, {m['machine']}), Python {m['python']}; "
        f"ONNX Runtime providers available: {', '.join(m['onnxruntime_providers'])}.",
        "Every row runs in a fresh process; timings are end-to-end from the post on disk (JPEG decode, "
        f"tokenisation, model, post-processing); batch-1 latency over {result['single']} posts after warm-up; "
        f"throughput at batch {b} over {result['throughput_posts']} posts.",
        "",
        *md_table(
            [
                "row",
                "backend",
                "precision",
                "size MB",
                "Macro-F1 (test)",
                "agreement with FP32",
                "batch-1 text-only p50 / p90 / p99 ms",
                "batch-1 text+image p50 / p90 / p99 ms",
                f"batch-{b} text-only posts/s",
                f"batch-{b} text+image posts/s",
                "peak RSS MB",
                "cold start s",
            ],
            [],
        ),
    ]
    for r in result["rows"]:
        if r.get("status") != "ok":
            lines.append(f"| {r['name']} | failed: {r.get('error')} |" + " |" * 10)
            continue
        lt, li = r["latency_batch1_text_only"], r["latency_batch1_text_image"]
        agree = r.get("label_agreement_with_fp32")
        cold = "–" if r["cold_start_s"] is None else f"{r['cold_start_s']:.2f}"
        lines.append(
            f"| {r['name']} | {r['backend']} | {r['precision']} | {r['size_mb']:.1f} | {r['macro_f1']:.4f} | "
            f"{'–' if agree is None else f'{agree * 100:.1f}%'} | "
            f"{lt['p50']:.1f} / {lt['p90']:.1f} / {lt['p99']:.1f} | "
            f"{li['p50']:.1f} / {li['p90']:.1f} / {li['p99']:.1f} | {r[f'throughput_batch{b}_text_only']:.1f} | "
            f"{r[f'throughput_batch{b}_text_image']:.1f} | {r['peak_rss_mb']:.0f} | "
            f"{cold} |"
        )
    load = result.get("load") or {}
    if load.get("median") is not None:
        lines += [
            "",
            f"Threads: every row at {result.get('threads') or 'all'} intra-op thread(s), the peers too. "
            f"Every row measured in {alt_rounds(result)} alternated rounds (order reversed every other round, "
            "a fresh process per turn); figures are medians over rounds. Machine load (1-minute average) "
            f"during the run: median {load['median']:.2f}, {load['min']:.2f}-{load['max']:.2f}.",
        ]
        if load.get("moved"):
            lines += [
                "",
                f"**Warning: the machine's load moved during the run ({load['min']:.2f} -> {load['max']:.2f}): "
                "another process came or went; compare ratios within rounds, not absolute figures.**",
            ]
    base = baseline_ratios(result)
    if base:
        lines += [
            "",
            "## Text-only posts against a baseline bundle",
            "",
            "The same variant of the baseline bundle (`--against`) in the same alternated rounds: batch-1 "
            "text-only p50 of the baseline over ours, per round.",
            "",
            "| row | baseline | ratio per round | median | spread |",
            "|---|---|---|---|---|",
        ]
        for name, r in base.items():
            lines.append(
                f"| {name} | {r['baseline']} | {' / '.join(f'{x:.2f}x' for x in r['per_round'])} | "
                f"{r['median']:.2f}x | {r['min']:.2f}-{r['max']:.2f}x |"
            )
    for run in result.get("triage") or []:
        lines += triage_section(run)
    lines += cold_start_section(result.get("cold_start"))
    lines += memory_section(result.get("memory"))
    alt = result.get("alternating")
    if alt and speedups(result):
        lines += [
            "",
            "## Speed-up over the peer, alternating rounds",
            "",
            f"The CPU INT8 rows and the peer once more, batch-1 text+image latency only, in {alt['rounds']} "
            "rounds (order reversed every other round), every turn a fresh process: rows timed seconds "
            "apart, where the rows above run minutes apart and their ratio also carries the shared "
            "machine's drift. The speed-up is the median over rounds of the ratio within a round.",
            "",
            "| row | p50 ms per round | peer p50 ms per round | speed-up per round | speed-up (median) | "
            "speed-up, separate rows |",
            "|---|---|---|---|---|---|",
        ]

        def ms(values: list[float | None]) -> str:
            return " / ".join("–" if v is None else f"{v:.1f}" for v in values)

        for name, r in speedups(result).items():
            med = "–" if r["alternating"] is None else f"{r['alternating']:.2f}x ({r['min']:.2f}-{r['max']:.2f}x)"
            lines.append(
                f"| {name} | {ms(alt['p50_ms'].get(name, []))} | {ms(alt['p50_ms'].get(PEER_ROW, []))} | "
                f"{' / '.join(f'{x:.2f}x' for x in r['per_round']) or '–'} | {med} | {r['separate']:.2f}x |"
            )
    return "\n".join(lines)


def alt_rounds(result: dict[str, Any]) -> int:
    return int((result.get("alternating") or {}).get("rounds") or 1)


def triage_section(run: dict[str, Any]) -> list[str]:
    """The end-to-end `crisislens triage` rounds: posts/s per setting and round, the ratio to the
    baseline setting with its spread, the load of each turn."""
    busy = f"beside {run['compete']} competing busy process(es)" if run["compete"] else "no competing process added"
    lines = [
        "",
        f"## crisislens triage end to end ({busy})",
        "",
        f"Whole `crisislens triage` processes on the CrisisMMD test posts, into a new store each time, in "
        f"{run['rounds']} alternated rounds: start, model load, reading, every post. Settings: "
        + "; ".join(f"{n} = `{' '.join(a) or '(defaults)'}`" for n, a in run["settings"].items())
        + ".",
        "",
        "| setting | posts/s per round | ratio to " + run["baseline"] + " per round | ratio (median) | spread | "
        "load per turn |",
        "|---|---|---|---|---|---|",
    ]
    for name, rates in run["posts_per_s"].items():
        ratio = run["ratio_to_baseline"].get(name, {})
        per = " / ".join("–" if x is None else f"{x:.2f}x" for x in ratio.get("per_round", [])) or "–"
        med = f"{ratio['median']:.2f}x" if ratio.get("median") is not None else "–"
        spread = f"{ratio['min']:.2f}-{ratio['max']:.2f}x" if ratio.get("median") is not None else "–"
        loads = " / ".join(
            "–" if not pair or None in pair else f"{pair[0]:.1f}->{pair[1]:.1f}" for pair in run["load"][name]
        )
        lines.append(
            f"| {name} | {' / '.join('–' if x is None else f'{x:.1f}' for x in rates)} | {per} | {med} | {spread} | "
            f"{loads} |"
        )
    if run.get("peers"):
        lines += [
            "",
            "Peers, in the same rounds, each a whole process on the same posts (start, imports, model load, "
            "reading, every post in the batches `crisislens triage` makes; no store written): "
            + "; ".join(f"{n} on {p.get('threads')} thread(s)" for n, p in run["peers"].items())
            + ". Ratio = the setting's posts/s over the peer's, within each round.",
            "",
            "| setting | peer | ratio per round | ratio (median) | spread |",
            "|---|---|---|---|---|",
        ]
        for name, per_peer in run.get("ratio_to_peers", {}).items():
            for peer, ratio in per_peer.items():
                per = " / ".join("–" if x is None else f"{x:.2f}x" for x in ratio.get("per_round", [])) or "–"
                med, rng = "–", "–"
                if ratio.get("median") is not None:
                    med, rng = f"{ratio['median']:.2f}x", f"{ratio['min']:.2f}-{ratio['max']:.2f}x"
                lines.append(f"| {name} | {peer} | {per} | {med} | {rng} |")
    errors = {n: e for n, e in run.get("errors", {}).items() if e}
    if errors:
        lines += ["", "Failed turns: " + "; ".join(f"{n}: {e}" for n, e in errors.items()) + "."]
    return lines


def cold_start_section(cold: dict[str, Any] | None) -> list[str]:
    """`crisislens triage` on one post, whole processes (bench_scale.cold_start)."""
    if not cold or cold.get("median") is None:
        return []
    each = " / ".join("–" if s is None else f"{s:.2f}" for s in cold["seconds"])
    loads = " / ".join("–" if not p or None in p else f"{p[0]:.1f}->{p[1]:.1f}" for p in cold["load"])
    return [
        "",
        "## Cold start: crisislens triage on one post",
        "",
        "A whole `crisislens triage` process on one text post into a new store, at its defaults: start, imports, "
        "model load, reading, the prediction, the store written, exit; after one warm-up turn (not counted), with "
        "Python's bytecode cache on as an installed package has it.",
        "",
        "| turns | seconds per turn | median | min-max | peak RSS MB (median) | load per turn |",
        "|---|---|---|---|---|---|",
        f"| {len(cold['seconds'])} | {each} | {cold['median']:.2f} | {cold['min']:.2f}-{cold['max']:.2f} | "
        f"{cold['peak_rss_mb']:.0f} | {loads} |",
    ]


def memory_section(memory: dict[str, Any] | None) -> list[str]:
    """Peak RSS of `crisislens triage` as the number of posts grows (bench_scale.memory_scale)."""
    if not memory:
        return []
    lines = [
        "",
        "## Peak memory against the number of posts",
        "",
        "`crisislens triage` at its defaults on synthetic text posts (6-24 words from a fixed word list), a fresh "
        "process and a new store for each size; peak RSS of the process.",
        "",
        "| posts | stored | peak RSS MB | posts/s | load |",
        "|---|---|---|---|---|",
    ]
    for n, stored, rss, rate, load in zip(
        memory["posts"], memory["stored"], memory["peak_rss_mb"], memory["posts_per_s"], memory["load"]
    ):
        lines.append(
            f"| {n:,} | {'–' if stored is None else f'{stored:,}'} | {'–' if rss is None else f'{rss:.1f}'} | "
            f"{'–' if rate is None else f'{rate:.1f}'} | "
            f"{'–' if not load or None in load else f'{load[0]:.1f}->{load[1]:.1f}'} |"
        )
    if memory.get("growth") is not None:
        lines += [
            "",
            f"Growth of the peak RSS from the smallest to the largest run: {memory['growth'] * 100:.1f}% "
            "(largest less smallest, over the smallest).",
        ]
    return lines


def chart(result: dict[str, Any], path: Path) -> Path:
    """Bar chart (Pillow only) of batch-1 text+image p50 latency per row."""
    from PIL import Image, ImageDraw

    rows = [r for r in result["rows"] if r.get("status") == "ok"]
    w, row_h, left = 900, 34, 230
    img = Image.new("RGB", (w, 60 + row_h * max(len(rows), 1)), "white")
    d = ImageDraw.Draw(img)
    d.text((10, 10), "batch-1 latency, text+image post, p50 (ms, lower is better)", fill="black")
    top = max((r["latency_batch1_text_image"]["p50"] for r in rows), default=1.0)
    for i, r in enumerate(rows):
        y = 40 + i * row_h
        v = r["latency_batch1_text_image"]["p50"]
        d.text((10, y + 8), r["name"], fill="black")
        d.rectangle(
            [left, y + 4, left + int((w - left - 90) * v / top), y + row_h - 8],
            fill=(40, 110, 200) if r["backend"] == "onnxruntime" else (200, 120, 40),
        )
        d.text((left + int((w - left - 90) * v / top) + 6, y + 8), f"{v:.1f}", fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path
