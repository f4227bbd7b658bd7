import contextlib
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


def copy_project(dst: Path) -> Path:
    """A private copy of what a study builds its book from (configuration, notebooks, book pages),
    so that an end-to-end run never writes into the checkout. Returns the copy's root."""
    root = dst / "project"
    root.mkdir()
    for name in ("_config.yml", "_toc.yml", "CHANGELOG.md", "CITATION.cff"):
        shutil.copy(ROOT / name, root / name)
    shutil.copytree(ROOT / "notebooks", root / "notebooks")
    shutil.copytree(ROOT / "book", root / "book", ignore=shutil.ignore_patterns("_generated"))
    return root


@contextlib.contextmanager
def tmpfs(folder: Path, options: str = "size=1m"):
    """A small tmpfs made at `folder`, mounted for the block and unmounted after it (root only: the
    test is skipped otherwise)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory):
    """A small synthetic C-NMC tree (about 150 training-fold images), generated once per session."""
    from alllib.study.synthetic import synthesize

    return synthesize(tmp_path_factory.mktemp("synth") / "set", scale=0.012, seed=7, progress=False)


@pytest.fixture()
def synth_copy(synth_root, tmp_path):
    """A private copy of the synthetic tree that a test may damage."""
    dst = tmp_path / "C-NMC_Leukemia"
    shutil.copytree(synth_root, dst)
    return dst


def fake_predictions(quality, seed, n_subjects=12, per_subject=6, noise=0.25):
    """Validation and test predictions of one model; `quality` pulls p(ALL) toward the truth."""
    rng = np.random.default_rng(seed)
    rows = []
    for split, prefix in (("validation", "v"), ("preliminary_test", "t")):
        for s in range(n_subjects):
            y = s % 2
            for i in range(per_subject):
                p = float(np.clip(0.5 + (quality if y else -quality) + rng.normal(0, noise), 0.01, 0.99))
                rows.append(
                    {
                        "split": split,
                        "image_id": f"{prefix}{s}_{i}",
                        "subject": f"{prefix.upper()}{s}",
                        "label": "all" if y else "hem",
                        "y": y,
                        "p_hem": 1 - p,
                        "p_all": p,
                    }
                )
    return pd.DataFrame(rows)


def pytest_collection_modifyitems(items):
    """The end-to-end smoke study first: it is the longest file by far, and under pytest-xdist
    (`-n 2 --dist loadfile`, as `make test` runs) it then runs beside all the others, not after them."""
    items.sort(key=lambda item: item.get_closest_marker("e2e") is None)
