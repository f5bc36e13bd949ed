"""One base class for the errors a user can act on, so a command catches one type.

Each subclass also keeps the built-in type it has always been (`BundleError` is a ValueError,
`TensorRTUnavailable` an ImportError...), so code that caught those still does. The message
names the file, the row or the field and what is wrong; the CLI prints it as one line, without
a traceback (`crisislens.runtime.cli`).
"""

from __future__ import annotations


class CrisisLensError(Exception):
    """An error the user can act on (a bad file, a missing dependency, a mismatched engine)."""


class DataRootError(CrisisLensError, FileNotFoundError):
    """The data root does not exist; the message names the path(s) tried."""


class DatasetError(CrisisLensError, ValueError):
    """An unknown dataset name, or labelled data that cannot be scored."""


__all__ = ["CrisisLensError", "DataRootError", "DatasetError"]
