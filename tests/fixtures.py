"""The test data: every synthetic file, tree and archive the tests make, and the real test
data of dclab and dcnum (downloaded once). ``tests/conftest.py`` turns these into fixtures;
test modules import them by name (``from fixtures import small_rtdc``). The six real sample
files are ``conftest``'s (``tests/data``)."""
from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from dcbulk.synth import make_archive, make_rtdc

__all__ = ["DCLAB_FILES", "cache_dir", "in_ci", "fetch_all_test_data", "fetch_dclab_test_data",
           "small_rtdc", "small_sources", "synthetic_archive"]


def small_rtdc(path, events: int = 40, *, seed: int = 0, compression: str | None = "none",
               with_traces: bool = False, **kwargs) -> Path:
    """One small synthetic ``.rtdc`` file at ``path`` (parents made): uncompressed and
    without traces unless asked (``kwargs``: :func:`dcbulk.synth.make_rtdc`'s)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return Path(make_rtdc(path, events, seed=seed, compression=compression,
                          with_traces=with_traces, **kwargs))


def small_sources(root, names, *, events: int = 40, step: int = 1, seed: int = 0,
                  **kwargs) -> list[Path]:
    """Small synthetic sources at the relative paths ``names`` below ``root``: the k-th has
    ``events + step * k`` events and the seed ``seed + k`` (see :func:`small_rtdc`)."""
    return [small_rtdc(Path(root) / name, events + step * k, seed=seed + k, **kwargs)
            for k, name in enumerate(names)]


def synthetic_archive(root, n_files: int, *, events: tuple[int, int], seed: int,
                      bad_files: int = 0, **kwargs) -> tuple[Path, list[Path]]:
    """An uncompressed synthetic archive of ``n_files`` good files (a tree) and
    ``bad_files`` broken ones below ``root``: ``(root, the good files sorted)``."""
    good = make_archive(root, n_files, events=events, seed=seed,
                        compression=kwargs.pop("compression", "none"), bad_files=bad_files,
                        **kwargs)
    return Path(root), sorted(Path(p) for p in good)


#: a handful of dclab's test files (zip name in the sdist's tests/data -> file inside)
DCLAB_FILES = {
    "fmt-hdf5_fl_2017.zip": "artificial_hdf5.rtdc",              # contours, traces
    "fmt-hdf5_mask-contour_2018.zip": "mask_contour_reference.rtdc",  # contours, masks
    "fmt-hdf5_image-bg_2020.zip": "2020-10_image_bg.rtdc",       # no run identifier
    "fmt-hdf5_segfault-compound_2023.zip": "compound.rtdc",      # compound tables
}


def cache_dir() -> Path:
    """Where downloaded test data are kept ($DCBULK_TEST_CACHE, else ~/.cache/dcbulk-tests)."""
    return Path(os.environ.get("DCBULK_TEST_CACHE", Path.home() / ".cache" / "dcbulk-tests"))


def in_ci() -> bool:
    """True when the CI environment variable is set to something other than 0/false/no."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _sdist(cache: Path, package: str) -> tuple[Path, str]:
    """The installed ``package``'s sdist, downloaded once into ``cache`` (pip download).

    Skipped with the reason when the package index cannot be reached; under CI (``CI`` set)
    that fails instead: a CI run must test the real data.
    """
    version = __import__(package).__version__
    root = cache / f"{package}-{version}"
    root.mkdir(parents=True, exist_ok=True)
    sdist = root / f"{package}-{version}.tar.gz"
    if not sdist.is_file():
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                               "--no-binary", package, "-d", str(root), f"{package}=={version}"],
                              capture_output=True, text=True, timeout=300)
        if proc.returncode or not sdist.is_file():
            reason = (f"cannot download the {package} {version} sdist: "
                      f"{proc.stderr.strip().splitlines()[-1:] or proc.returncode}")
            if in_ci():
                pytest.fail(f"CI is set, so the test data must be there: {reason}")
            pytest.skip(reason)
    return sdist, f"{package}-{version}"


def fetch_dclab_test_data(cache: Path) -> dict[str, Path]:
    """Download the installed dclab's sdist once and extract :data:`DCLAB_FILES`."""
    import dclab
    root = cache / f"dclab-{dclab.__version__}"
    files = {name: root / name for name in DCLAB_FILES.values()}
    if all(p.is_file() for p in files.values()):
        return files
    sdist, top = _sdist(cache, "dclab")
    with tarfile.open(sdist) as tar:
        for zname, fname in DCLAB_FILES.items():
            member = tar.extractfile(f"{top}/tests/data/{zname}")
            with zipfile.ZipFile(member) as zf:
                (root / fname).write_bytes(zf.read(fname))
    return files


def fetch_all_test_data(cache: Path, dest: Path) -> list[Path]:
    """Every ``.rtdc`` file in the zips of dclab's and dcnum's ``tests/data`` (their sdists)
    extracted below ``dest/<package>-<version>/``; returns the files, sorted."""
    files = []
    for package in ("dclab", "dcnum"):
        sdist, top = _sdist(cache, package)
        with tarfile.open(sdist) as tar:
            for member in tar.getmembers():
                name = member.name
                if not (name.startswith(f"{top}/tests/data/") and name.endswith(".zip")):
                    continue
                with zipfile.ZipFile(tar.extractfile(member)) as zf:
                    for inner in zf.namelist():
                        if inner.endswith(".rtdc"):
                            target = dest / top / Path(name).stem / Path(inner).name
                            target.parent.mkdir(parents=True, exist_ok=True)
                            target.write_bytes(zf.read(inner))
                            files.append(target)
    return sorted(files)


