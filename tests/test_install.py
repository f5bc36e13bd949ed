"""The new user's first run (issue 25, "Done when"): build the wheel from a clean copy of the
repository, install it into a fresh virtual environment, and from a folder outside the checkout
triage posts with no --bundle, ask --version, triage a second folder whose file names clash with
the first, and give a path that does not exist.

To keep CI quick and offline the install takes no dependency from the network: the wheel is built
with `--no-build-isolation` and installed with `--no-deps` into a venv that sees this venv's
packages (numpy, onnxruntime, ...) through a .pth line, never its editable CrisisLens (a .pth
line adds a folder, it does not run that folder's own .pth files). The copy holds the files a
clone would (tracked, or new and not ignored). About 20 s: the wheel carries the 50 MB default bundle. Marked
`install`; `pytest -m "not install"` leaves it out.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.install


def _clean_copy(dest: Path) -> Path:
    """The files git tracks or would track (not ignored), as they are in the working tree: what a
    clone holds once they are committed; build outputs, venvs and caches stay out."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO, capture_output=True, check=True
    ).stdout.decode().split("\0")
    for name in filter(None, files):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """bin/ of a fresh venv with CrisisLens installed from its wheel."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs the git checkout (the wheel is built from the tracked files)")
    root = tmp_path_factory.mktemp("install")
    source = _clean_copy(root / "clone")
    wheels = root / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet", "-w", str(wheels), "."],
        cwd=source,
        check=True,
    )
    wheel = next(wheels.glob("crisislens-*.whl"))
    env_dir = root / "venv"
    venv.create(env_dir, with_pip=False)
    bin_dir = env_dir / "bin"
    purelib = subprocess.run(
        [str(bin_dir / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(purelib) / "_crisislens_test_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(bin_dir / "python"), "install", "--no-deps", "--quiet",
         str(wheel)],
        check=True,
    )
    assert wheel.stat().st_size > 30_000_000  # the default bundle is inside
    return bin_dir


def _run(bin_dir: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRISISLENS_") and k != "PYTHONPATH"}
    return subprocess.run(
        [str(bin_dir / "crisislens"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def _posts(folder: Path, posts: dict[str, str]) -> None:
    folder.mkdir(parents=True)
    for pid, text in posts.items():
        (folder / f"{pid}.txt").write_text(text, encoding="utf-8")


def test_a_new_user_triages_from_another_folder_with_the_installed_model(installed, tmp_path):
    home = tmp_path / "responder"  # nowhere near the checkout
    _posts(home / "flood", {"p01": "Family of four trapped on the roof, send a boat!", "p02": "Road to the clinic is gone"})
    _posts(home / "later", {"p01": "Food kits donated at the town hall"})

    version = _run(installed, home, "--version")
    assert version.returncode == 0 and version.stdout.startswith("crisislens 0.")

    where = subprocess.run(
        [str(installed / "python"), "-c", "from crisislens.runtime.settings import DEFAULT_BUNDLE; print(DEFAULT_BUNDLE)"],
        cwd=home, capture_output=True, text=True, check=True,
    ).stdout.strip()
    assert where.startswith(str(installed.parent)) and "site-packages" in where  # the wheel's bundle, not the checkout's

    first = _run(installed, home, "triage", "flood", "--quiet")
    assert first.returncode == 0, first.stderr
    assert "2 predicted" in first.stdout and "flood.triage.sqlite" in first.stdout
    assert (home / "flood.triage.sqlite").is_file()

    clash = _run(installed, home, "triage", "later", "--store", "flood.triage.sqlite", "--quiet")
    assert clash.returncode == 0, clash.stderr
    assert "1 predicted" in clash.stdout and "3 predictions" in clash.stdout  # not swallowed
    assert "stored as p01#2" in clash.stderr

    missing = _run(installed, home, "triage", "no-such-folder", "--quiet")
    assert missing.returncode == 1
    assert "error: no-such-folder: no such file or folder" in missing.stderr
