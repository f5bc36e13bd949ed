"""The one `crisislens` command.

Every stage adds its own subcommands: the runtime registers its own here, and the stages
that stand on it (distill, export, tui) plug in through the `crisislens.cli` entry-point
group, each with a `register(cli: Cli)` function. Stage modules import their heavy
dependencies (torch, sklearn, textual) inside the command functions, so `crisislens --help`
stays fast and works on a base (runtime-only) install.

Exit codes: 0 success, 1 the job ran but found problems (e.g. bad input rows), 2 usage or
input error, 3 a needed optional dependency is missing, 4 the store cannot be written (read-only,
disk full), 130 interrupted, 143 terminated (SIGTERM), 141 the reader of its
output went away (`| head`).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from crisislens.runtime.backends.select import PREFERENCES
from crisislens.runtime.errors import CrisisLensError

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2
EXIT_MISSING_DEPENDENCY = 3
EXIT_STORE = 4  # the triage store cannot be written: read-only, locked, the disk full
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM: stopped by `kill` or a service manager; rerun to resume
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a command whose reader left

Handler = Callable[[argparse.Namespace], int]


class CliError(CrisisLensError):
    """An error the user can act on: printed as one line, no traceback."""

    def __init__(self, message: str, code: int = EXIT_USAGE):
        super().__init__(message)
        self.code = code


def require(module: str, extra: str) -> None:
    """Fail with a clear message when an optional dependency of a command is missing."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise CliError(
            f"this command needs '{module}', which is not installed: pip install 'crisislens[{extra}]'",
            EXIT_MISSING_DEPENDENCY,
        )


# The help of a group that several stages add commands to, so that it does not depend on which
# stage registers first.
GROUP_HELP = {
    "eval": "evaluate a model bundle or a predictions file, or (subcommands) train+evaluate models",
    "store": "work on triage stores (import: bring a cluster run's Parquet shards into one)",
}


class Cli:
    """A node of the command tree: add commands, or groups of commands, below it."""

    def __init__(self, parser: argparse.ArgumentParser):
        self.parser = parser
        self._sub: argparse._SubParsersAction | None = None
        self._children: dict[str, Cli] = {}

    def _subparsers(self) -> argparse._SubParsersAction:
        if self._sub is None:
            self._sub = self.parser.add_subparsers(dest=f"_cmd_{id(self)}", metavar="COMMAND")
        return self._sub

    def command(
        self, name: str, help: str, handler: Handler, description: str | None = None, hidden: bool = False
    ) -> argparse.ArgumentParser:
        """Add `name` below this node, run by `handler(args) -> exit code`. A `hidden` command (one
        the tools call, not a person) runs like any other but is not listed in `--help`."""
        if name in self._children:
            raise ValueError(f"command {name!r} registered twice")
        listed: dict[str, Any] = {} if hidden else {"help": help}  # argparse lists a subcommand only given a help
        parser = self._subparsers().add_parser(
            name,
            description=description or help,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            **listed,
        )
        parser.set_defaults(_handler=handler)
        self._children[name] = Cli(parser)
        return parser

    def is_command(self, name: str) -> bool:
        """Whether `name` is a command (a leaf, not a group) directly below this node."""
        child = self._children.get(name)
        return child is not None and not child._children and child.parser.get_default("_handler") is not None

    def group(self, name: str, help: str, description: str | None = None) -> Cli:
        """Get or create a group `name` (e.g. `eval`) that holds subcommands of its own."""
        if name not in self._children:
            parser = self._subparsers().add_parser(
                name,
                help=GROUP_HELP.get(name, help),
                description=description or help,
                formatter_class=argparse.RawDescriptionHelpFormatter,
            )
            parser.set_defaults(_handler=None, _group_parser=parser)
            self._children[name] = Cli(parser)
        return self._children[name]


# ----------------------------------------------------------------------------- shared option groups


def add_engine_options(parser: argparse.ArgumentParser, *, batching: bool = True) -> None:
    """The options of every command that runs a bundle variant (`engine_options` reads them):
    --variant, --image-root, --backend and, with `batching`, --classes, --batch-size, --threads,
    --providers."""
    parser.add_argument("--variant", default=None, help="bundle variant (default: the bundle's default)")
    parser.add_argument("--image-root", type=Path, default=None, metavar="DIR", help="resolve image paths against DIR")
    if batching:
        parser.add_argument(
            "--classes", default=None, metavar="A,B,...", help="restrict prediction to these labels (renormalised)"
        )
        parser.add_argument("--batch-size", type=int, default=32, help="posts per model call (default: 32)")
        parser.add_argument(
            "--threads",
            type=int,
            default=None,
            help="ONNX Runtime intra-op threads per model call (default: all cores; triage: 1 per worker)",
        )
        parser.add_argument(
            "--providers", default=None, metavar="P1,P2", help="ONNX Runtime execution providers, in order"
        )
    parser.add_argument(
        "--backend",
        choices=list(PREFERENCES),
        default="auto",
        help="auto: a native TensorRT engine when one fits this GPU, else ONNX Runtime (default)",
    )


def comma_list(value: str | None) -> list[str] | None:
    """`a, b,c` -> ["a", "b", "c"]; None or empty -> None."""
    items = [v.strip() for v in value.split(",") if v.strip()] if value else []
    return items or None


def printable(text: str, keep_newlines: bool = False) -> str:
    """Escape control characters and undecodable bytes: file names and ids come from the field.
    `keep_newlines`: a message of several lines (a bundle's problems) keeps its line breaks."""
    if keep_newlines:
        return "\n".join(printable(line) for line in text.split("\n"))
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
