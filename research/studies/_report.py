"""How the benchmark scripts head and write their reports (one place for all of them)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from crisislens.runtime.reports import provenance, render_again, write_report


def run_line(prov: dict[str, Any], seconds: float, extra: str = "") -> str:
    """A report's line under its title: command, commit, when, run time (then `extra`, e.g. ' · 2 threads')."""
    return (f"Command: `{prov['command']}` · commit {prov['git_commit'][:7]} · {prov['created']} · "
            f"run time {seconds} s{extra}.")


def publish(name: str, command: str, result: dict[str, Any],
            render: Callable[[dict[str, Any], dict[str, Any]], str], out: Path) -> None:
    """Write <out>/<name>.{json,md} for `result` with the provenance of `command`, and say where."""
    prov = provenance(command)
    json_path, md_path = write_report(name, {"provenance": prov, **result}, render(result, prov), out)
    print(f"wrote {json_path} and {md_path}", file=sys.stderr)


def add_render_only(parser: Any) -> None:
    """The `--render-only` option: rewrite a report's .md from the numbers in its .json."""
    parser.add_argument("--render-only", action="store_true", help="rewrite the .md from the numbers in the .json")


def render_only(name: str, out: Path, render: Callable[[dict[str, Any], dict[str, Any]], str]) -> int:
    """Rewrite <out>/<name>.md from <out>/<name>.json with `render`, nothing re-measured; exit code 0."""
    render_again(name, out, lambda payload: render(payload, payload["provenance"]))
    print(f"rewrote {out / (name + '.md')}")
    return 0


def kept(out: Path, name: str, section: str, names: list[str], error: Callable[[str], Any]) -> dict[str, Any]:
    """The `names` entries of <out>/<name>.json's `section`, each with the commit and date that
    measured it (`kept_from`, carried over when it was itself kept); `error` is called on a name
    that is not there (an argparse parser's `error`)."""
    path = out / f"{name}.json"
    earlier = json.loads(path.read_text()) if path.is_file() else {}
    found = {}
    for key in names:
        if key not in earlier.get(section, {}):
            error(f"--keep {key!r}: not in {path}")
        prov, entry = earlier["provenance"], earlier[section][key]
        found[key] = {**entry, "kept_from": entry.get("kept_from")
                      or {"git_commit": prov.get("git_commit"), "created": prov.get("created")}}
    return found


def kept_lines(entries: dict[str, Any], how: str) -> list[str]:
    """The report's line naming the entries kept from an earlier run (`how`: what was not redone)."""
    kept_from = [(n, r["kept_from"]) for n, r in entries.items() if "kept_from" in r]
    if not kept_from:
        return []
    return ["", f"Kept from an earlier run of this study ({how}): " + "; ".join(
        f"{n} (commit {str(k.get('git_commit'))[:7]}, {k.get('created')})" for n, k in kept_from) + "."]


def numbers(text: str) -> list[float]:
    """argparse `type=` for a comma-separated list of numbers (`--weights 0,0.1,0.3`)."""
    import argparse

    try:
        return [float(w) for w in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: comma-separated numbers") from None
