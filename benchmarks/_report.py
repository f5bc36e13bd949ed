"""How the benchmark scripts head and write their reports (one place for the five of them)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from crisislens.runtime.reports import provenance, write_report


def run_line(prov: dict[str, Any], seconds: float, extra: str = "") -> str:
    """A report's line under its title: command, commit, when, run time (then `extra`, e.g. ' · 2 threads')."""
    return (f"Command: `{prov['command']}` · commit {prov['git_commit'][:7]} · {prov['created']} · "
            f"run time {seconds} s{extra}.")


def publish(name: str, command: str, result: dict[str, Any],
            render: Callable[[dict[str, Any], dict[str, Any]], str], out: Path) -> None:
    """Write reports/<name>.{json,md} for `result` with the provenance of `command`, and say where."""
    prov = provenance(command)
    json_path, md_path = write_report(name, {"provenance": prov, **result}, render(result, prov), out)
    print(f"wrote {json_path} and {md_path}", file=sys.stderr)
