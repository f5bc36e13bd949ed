"""How the bundle reaches every worker, and the check each makes before it predicts.

The driver loads the bundle (every file's sha256 checked against the manifest) and puts its
files into Ray's object store once. A worker uses the bundle at the driver's path when it has
one there with the same manifest hash (a shared or identical path); otherwise it unpacks the
carried copy into a cache folder of its own machine (`<tmp>/crisislens-bundles/<hash>`). Either
way it loads it with every file's hash checked and compares the manifest's hash with the
driver's: a worker never predicts with another model than the run's.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from crisislens.runtime.bundle import MANIFEST, Bundle, BundleError, load_bundle
from crisislens.runtime.files import atomic_write

CACHE = "crisislens-bundles"


def bundle_files(bundle: Bundle) -> dict[str, bytes]:
    """The bundle's manifest and every file it lists, by name: what the driver carries."""
    manifest = (bundle.path / MANIFEST).read_bytes()
    names = sorted(json.loads(manifest)["files"])
    return {MANIFEST: manifest, **{name: (bundle.path / name).read_bytes() for name in names}}


def unpack(files: dict[str, bytes], sha256: str, cache: Path | None = None) -> Path:
    """Write a carried bundle into this machine's cache (each file whole: actors of one machine may
    unpack the same bundle at once), once per bundle hash."""
    folder = (cache or Path(tempfile.gettempdir()) / CACHE) / sha256[:16]
    for name, data in files.items():
        target = folder / name
        if not (target.is_file() and target.stat().st_size == len(data)):
            atomic_write(target, data, fsync=False)
    return folder


def worker_bundle(path: str, sha256: str, carried: dict[str, bytes] | None) -> Bundle:
    """The run's bundle on this worker, checked (see the module): `path` when it holds the bundle
    with hash `sha256`, else the `carried` files unpacked here. `BundleError` when neither does."""
    local = Path(path)
    found = "no bundle there"
    if (local / MANIFEST).is_file():
        try:
            bundle = load_bundle(local)
            if bundle.sha256 == sha256:
                return bundle
            found = f"a bundle with hash {bundle.short_hash}"
        except BundleError as exc:
            found = f"a damaged bundle ({exc})"
    if carried is None:
        raise BundleError(local, f"this worker has {found}; the run's bundle has hash {sha256[:12]}")
    bundle = load_bundle(unpack(carried, sha256))
    if bundle.sha256 != sha256:
        raise BundleError(bundle.path, f"unpacked with hash {bundle.short_hash}, the run's is {sha256[:12]}")
    return bundle


__all__ = ["CACHE", "bundle_files", "unpack", "worker_bundle"]
