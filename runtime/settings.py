"""One settings object: where the data, the bundle, the triage store and the reports are.

Each setting comes from, in order: the command line (`--data-root`, `--bundle`, ...), a
`CRISISLENS_*` environment variable, then the default below. Paths are resolved here and
nowhere else, so two commands cannot disagree about the same variable.

| setting | variable | default |
|---|---|---|
| data root | `CRISISLENS_DATA` | `../shared/data` beside the repository, else from the working directory |
| bundle | `CRISISLENS_BUNDLE` | `models/crisislens-student` |
| triage store | `CRISISLENS_STORE` | `triage.sqlite` |
| reports | `CRISISLENS_REPORTS` | `reports` |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from crisislens.runtime.errors import DataRootError

ENV_PREFIX = "CRISISLENS_"
ENV_DATA_ROOT = ENV_PREFIX + "DATA"
_REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_ROOTS = (_REPO_ROOT.parent / "shared" / "data", Path("..") / "shared" / "data")
DEFAULT_BUNDLE = Path("models/crisislens-student")
DEFAULT_STORE = Path("triage.sqlite")
DEFAULT_REPORTS = Path("reports")
DATA_ROOT_HELP = f"data root (default: ${ENV_DATA_ROOT}, else ../shared/data)"


@dataclass(frozen=True)
class Settings:
    """The paths a command works with; build it with `Settings.from_env()`."""

    data: Path | None = None  # None: look for the default data root (`data_root`)
    bundle: Path = DEFAULT_BUNDLE
    store: Path = DEFAULT_STORE
    reports: Path = DEFAULT_REPORTS

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from the `CRISISLENS_*` variables of `environ` (default: this process's)."""
        env = os.environ if environ is None else environ

        def path(name: str, default: Path) -> Path:
            value = env.get(ENV_PREFIX + name)
            return Path(value).expanduser() if value else default

        data = env.get(ENV_DATA_ROOT)
        return cls(
            data=Path(data).expanduser() if data else None,
            bundle=path("BUNDLE", DEFAULT_BUNDLE),
            store=path("STORE", DEFAULT_STORE),
            reports=path("REPORTS", DEFAULT_REPORTS),
        )

    def data_root(self, arg: str | Path | None = None) -> Path:
        """The data root: `arg` (--data-root) > $CRISISLENS_DATA > ../shared/data.

        A root that was asked for (`arg` or the variable) and does not exist is an error naming
        it, never silently replaced by the default; the default is looked for beside this
        repository and from the working directory. Raises `DataRootError`."""
        if arg is not None and str(arg) != "":
            return _existing(Path(arg).expanduser(), "given explicitly")
        if self.data is not None:
            return _existing(self.data, f"from ${ENV_DATA_ROOT}")
        candidates = [DEFAULT_DATA_ROOTS[0], Path.cwd() / DEFAULT_DATA_ROOTS[1]]
        for path in candidates:
            if path.is_dir():
                return path.resolve()
        tried = ", ".join(dict.fromkeys(str(p) for p in candidates))
        raise DataRootError(f"data root not found (tried {tried}); pass --data-root DIR or set ${ENV_DATA_ROOT}")


def _existing(path: Path, why: str) -> Path:
    if not path.is_dir():
        raise DataRootError(f"data root {path} does not exist ({why})")
    return path.resolve()


def settings() -> Settings:
    """The settings of this process (read from the environment at each call: tests change it)."""
    return Settings.from_env()


def data_root(arg: str | Path | None = None) -> Path:
    """`settings().data_root(arg)`: the data root for a `--data-root` option."""
    return settings().data_root(arg)


__all__ = [
    "DATA_ROOT_HELP",
    "DEFAULT_BUNDLE",
    "DEFAULT_REPORTS",
    "DEFAULT_STORE",
    "ENV_DATA_ROOT",
    "ENV_PREFIX",
    "Settings",
    "data_root",
    "settings",
]
