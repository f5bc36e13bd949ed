"""The one `crisislens` command: `base` (the command tree, exit codes, the error a command raises,
shared option groups), `parser` (the parser and `main`), `commands` (the runtime's own commands).

Exit codes: 0 success, 1 the job ran but found problems (e.g. bad input rows), 2 usage or
input error, 3 a needed optional dependency is missing, 4 the store cannot be written (read-only,
disk full), 130 interrupted, 143 terminated (SIGTERM), 141 the reader of its
output went away (`| head`).
"""

from crisislens.runtime.cli.base import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    EXIT_MISSING_DEPENDENCY,
    EXIT_OK,
    EXIT_PROBLEMS,
    EXIT_STORE,
    EXIT_TERMINATED,
    EXIT_USAGE,
    Cli,
    CliError,
    Handler,
    add_engine_options,
    comma_list,
    printable,
    require,
)
from crisislens.runtime.cli.parser import build_parser, main

__all__ = [
    "EXIT_BROKEN_PIPE",
    "EXIT_INTERRUPTED",
    "EXIT_MISSING_DEPENDENCY",
    "EXIT_OK",
    "EXIT_PROBLEMS",
    "EXIT_STORE",
    "EXIT_TERMINATED",
    "EXIT_USAGE",
    "Cli",
    "CliError",
    "Handler",
    "add_engine_options",
    "build_parser",
    "comma_list",
    "main",
    "printable",
    "require",
]
