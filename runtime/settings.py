"""One settings object: where the data, the bundle, the triage store and the reports are.

Each setting comes from, in order: the command line (`--data-root`, `--bundle`, ...), a
`CRISISLENS_*` environment variable, then the default below. Paths are resolved here and
nowhere else, so two commands cannot disagree about the same variable.

| setting | variable | default |
|---|---|---|
| data root | `CRISISLENS_DATA` | `../shared/data` beside the repository, else from the working directory |
| bundle | `CRISISLENS_BUNDLE` | the installed default bundle, `crisislens-student` (shipped in the package) |
| triage store | `CRISISLENS_STORE` | named after the first input, beside it: `posts/` -> `posts.triage.sqlite` |
| reports | `CRISISLENS_REPORTS` | `reports` |

The default bundle ships inside the installed package (`crisislens/models/crisislens-student`;
in a checkout, `models/crisislens-student`), so a plain `pip install` triages offline from any
folder. The default store keeps each incident apart: results go beside the posts they came
from, never into one file of the working directory that collects every run made there.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from crisislens.runtime.errors import CrisisLensError, DataRootError

ENV_PREFIX = "CRISISLENS_"
ENV_DATA_ROOT = ENV_PREFIX + "DATA"
ENV_BUNDLE = ENV_PREFIX + "BUNDLE"
ENV_STORE = ENV_PREFIX + "STORE"
# The checkout's root, or the installed `crisislens` package folder: both hold models/ (the wheel
# maps the package `crisislens.models` onto the checkout's models/ folder).
_REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_ROOTS = (_REPO_ROOT.parent / "shared" / "data", Path("..") / "shared" / "data")
DEFAULT_BUNDLE = _REPO_ROOT / "models" / "crisislens-student"
STORE_SUFFIX = ".triage.sqlite"
DEFAULT_REPORTS = Path("reports")
DATA_ROOT_HELP = f"data root (default: ${ENV_DATA_ROOT}, else ../shared/data)"
BUNDLE_HELP = f"model bundle folder (default: ${ENV_BUNDLE}, else the installed crisislens-student)"
STORE_HELP = (
    f"triage store, SQLite (default: ${ENV_STORE}, else named after the first input, beside it: "
    f"posts/ -> posts{STORE_SUFFIX})"
)


class SettingsError(CrisisLensError, FileNotFoundError):
    """A setting names something that is not there (a bundle folder); the message says where it came from."""


@dataclass(frozen=True)
class Settings:
    """The paths a command works with; build it with `Settings.from_env()`."""

    data: Path | None = None  # None: look for the default data root (`data_root`)
    bundle: Path | None = None  # None: the installed default bundle (`bundle_dir`)
    store: Path | None = None  # None: named after the inputs (`store_for`)
    reports: Path = DEFAULT_REPORTS

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from the `CRISISLENS_*` variables of `environ` (default: this process's)."""
        env = os.environ if environ is None else environ

        def path(name: str, default: Path) -> Path:
            value = env.get(ENV_PREFIX + name)
            return Path(value).expanduser() if value else default

        def optional(name: str) -> Path | None:
            value = env.get(ENV_PREFIX + name)
            return Path(value).expanduser() if value else None

        data = env.get(ENV_DATA_ROOT)
        return cls(
            data=Path(data).expanduser() if data else None,
            bundle=optional("BUNDLE"),
            store=optional("STORE"),
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

    def bundle_dir(self, arg: str | Path | None = None) -> Path:
        """The model bundle: `arg` (--bundle) > $CRISISLENS_BUNDLE > the installed default.

        Every command that runs a bundle resolves it here. A folder without a manifest.json is an
        error naming it and where it came from (raises `SettingsError`)."""
        if arg is not None and str(arg) != "":
            path, why = Path(arg).expanduser(), "--bundle"
        elif self.bundle is not None:
            path, why = self.bundle, f"${ENV_BUNDLE}"
        else:
            path, why = DEFAULT_BUNDLE, "the installed default"
        if not (path / "manifest.json").is_file():
            hint = "" if why == "--bundle" else "; pass --bundle DIR"
            raise SettingsError(f"{path}: no model bundle (manifest.json missing; from {why}){hint}")
        return path

    def store_for(self, inputs: Sequence[str | Path], arg: str | Path | None = None) -> Path:
        """The triage store: `arg` (--store) > $CRISISLENS_STORE > named after the first input.

        The default sits beside the first input (`posts/` -> `posts.triage.sqlite`, `flood.jsonl`
        -> `flood.triage.sqlite`), so runs over different incidents never share a file; where that
        folder cannot be written, it goes in the working directory under the same name."""
        if arg is not None and str(arg) != "":
            return Path(arg).expanduser()
        if self.store is not None:
            return self.store
        if not inputs:
            raise SettingsError(f"no input to name the store after; pass --store PATH or set ${ENV_STORE}")
        first = Path(inputs[0]).expanduser()
        resolved = first.resolve()
        name = (resolved.name if first.is_dir() else resolved.stem) or "posts"
        beside = resolved.parent / f"{name}{STORE_SUFFIX}"
        if os.access(beside.parent, os.W_OK):
            return _relative(beside)
        return Path(f"{name}{STORE_SUFFIX}")


def _relative(path: Path) -> Path:
    """`path` relative to the working directory where it is below it (shorter to print)."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


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
    "BUNDLE_HELP",
    "DATA_ROOT_HELP",
    "DEFAULT_BUNDLE",
    "DEFAULT_REPORTS",
    "ENV_BUNDLE",
    "ENV_DATA_ROOT",
    "ENV_PREFIX",
    "ENV_STORE",
    "STORE_HELP",
    "STORE_SUFFIX",
    "Settings",
    "SettingsError",
    "data_root",
    "settings",
]
