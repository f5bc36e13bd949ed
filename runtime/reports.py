"""Writing benchmark and evaluation reports: one JSON for machines, one Markdown for people.

Every report records how it was made (command line, git commit, versions, machine), so a
number in the README can be traced back to the run that produced it.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from crisislens.runtime.files import atomic_write

DEFAULT_REPORTS_DIR = Path("reports")
_PACKAGES = ("crisislens", "numpy", "onnxruntime", "tokenizers", "pillow", "scikit-learn", "torch", "transformers")


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _git_dirty() -> bool | None:
    """True when tracked code (outside reports/) differs from the commit: the number is then
    not exactly reproducible from `git_commit` alone."""
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)reports"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.stdout.strip()) if out.returncode == 0 else None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(packages: tuple[str, ...] = _PACKAGES) -> dict[str, Any]:
    """Versions and machine facts worth recording beside any measured number."""
    versions = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "packages": versions,
    }


def provenance(command: str | None = None) -> dict[str, Any]:
    return {
        "command": command or " ".join(["crisislens", *sys.argv[1:]]),
        "git_commit": _git_commit(),
        "git_dirty": _git_dirty(),
        "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "environment": environment(),
    }


def write_report(
    name: str, payload: dict[str, Any], markdown: str, out_dir: Path = DEFAULT_REPORTS_DIR
) -> tuple[Path, Path]:
    """Write `<out_dir>/<name>.json` and `.md`; returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"{name}.json"
    md_path = out_dir / f"{name}.md"
    atomic_write(json_path, json.dumps(payload, indent=2, ensure_ascii=False, sort_keys=False) + "\n")
    atomic_write(md_path, markdown.rstrip() + "\n")
    return json_path, md_path


def render_again(name: str, out_dir: Path, render: Any) -> tuple[Path, Path]:
    """Rewrite `<out_dir>/<name>.md` from the numbers in `<out_dir>/<name>.json` (after a change
    to the layout only: no number is recomputed). `render(payload) -> markdown`."""
    json_path = Path(out_dir) / f"{name}.json"
    md_path = Path(out_dir) / f"{name}.md"
    if not json_path.is_file():
        raise FileNotFoundError(f"{json_path}: no report to render; run the evaluation first")
    payload = json.loads(json_path.read_text(encoding="utf-8"))
    atomic_write(md_path, render(payload).rstrip() + "\n")
    return json_path, md_path
