"""The one `crisislens` command.

Every stage adds its own subcommands: the runtime registers its own here, and the stages
that stand on it (distill, export, tui) plug in through the `crisislens.cli` entry-point
group, each with a `register(cli: Cli)` function. Stage modules import their heavy
dependencies (torch, sklearn, textual) inside the command functions, so `crisislens --help`
stays fast and works on a base (runtime-only) install.

Exit codes: 0 success, 1 the job ran but found problems (e.g. bad input rows), 2 usage or
input error, 3 a needed optional dependency is missing, 130 interrupted, 141 the reader of its
output went away (`| head`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points

from crisislens.runtime.errors import CrisisLensError

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2
EXIT_MISSING_DEPENDENCY = 3
EXIT_INTERRUPTED = 130
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

    def command(self, name: str, help: str, handler: Handler, description: str | None = None) -> argparse.ArgumentParser:
        """Add `name` below this node, run by `handler(args) -> exit code`."""
        if name in self._children:
            raise ValueError(f"command {name!r} registered twice")
        parser = self._subparsers().add_parser(
            name,
            help=help,
            description=description or help,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        parser.set_defaults(_handler=handler)
        self._children[name] = Cli(parser)
        return parser

    def group(self, name: str, help: str, description: str | None = None) -> Cli:
        """Get or create a group `name` (e.g. `eval`) that holds subcommands of its own."""
        if name not in self._children:
            parser = self._subparsers().add_parser(
                name,
                help=help,
                description=description or help,
                formatter_class=argparse.RawDescriptionHelpFormatter,
            )
            parser.set_defaults(_handler=None, _group_parser=parser)
            self._children[name] = Cli(parser)
        return self._children[name]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crisislens",
        description="Explainable, offline triage of crisis social-media posts (text + photo).",
        epilog="Run 'crisislens COMMAND --help' for the options of a command.",
    )
    parser.set_defaults(_handler=None, _group_parser=parser)
    cli = Cli(parser)
    from crisislens.runtime import commands

    commands.register(cli)
    for ep in sorted(entry_points(group="crisislens.cli"), key=lambda e: e.name):
        try:
            register = ep.load()
        except ImportError as exc:  # a stage whose own imports are broken must not take the CLI down
            print(f"crisislens: warning: commands of '{ep.name}' unavailable: {exc}", file=sys.stderr)
            continue
        register(cli)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "_handler", None)
    if handler is None:
        args._group_parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(handler(args) or 0)
    except CliError as exc:
        print(f"crisislens: error: {exc}", file=sys.stderr)
        return exc.code
    except CrisisLensError as exc:  # one a command did not catch: still one line, no traceback
        print(f"crisislens: error: {printable(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("crisislens: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader went away (`crisislens validate ... | head`): stop quietly
        _silence_stdout()
        return EXIT_BROKEN_PIPE


def printable(text: str) -> str:
    """Escape control characters and undecodable bytes: file names and ids come from the field."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush at exit meets no closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout is not a file (captured, replaced)
        pass


if __name__ == "__main__":  # pragma: no cover
    # Run the imported module's main, not this __main__ copy: stages raise *its* CliError.
    from crisislens.runtime.cli import main as _main

    sys.exit(_main())
