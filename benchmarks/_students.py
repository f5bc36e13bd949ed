"""The `--student NAME=CHECKPOINT` option the student benchmarks share."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_student_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--student", action="append", required=True, metavar="NAME=CHECKPOINT")


def student_checkpoints(parser: argparse.ArgumentParser, specs: list[str]) -> dict[str, str]:
    """NAME -> checkpoint path, in the order given; a spec without an existing file is a usage error."""
    out: dict[str, str] = {}
    for spec in specs:
        name, _, path = spec.partition("=")
        if not name or not path or not Path(path).is_file():
            parser.error(f"--student {spec}: give NAME=CHECKPOINT with an existing checkpoint file")
        out[name] = path
    return out


def command(script: str, specs: list[str]) -> str:
    """The command line a report records."""
    return f"python benchmarks/{script} " + " ".join(f"--student {s}" for s in specs)
