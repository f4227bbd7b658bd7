"""The Study: one profile's settings and its data, read once per process.

`prepare` resolves the profile (with its overrides), generates the synthetic stand-in when no real
data is given, and reads and fingerprints the data tree. Every notebook kernel calls it once (via
`alllib.book.notebook.setup`); everything after it (training runs, analysis) takes the Study instead of
reading the tree again.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from alllib import io
from alllib.errors import StudyError
from alllib.method.dataset import check_images, data_fingerprint, is_synthetic, read_cnmc
from alllib.method.models import BACKBONES, initialisation
from alllib.method.preprocessing import input_pixels
from alllib.study.profile import load_profile
from alllib.study.runs import RunSet, is_complete, load_run, run_dir
from alllib.study.synthetic import ensure_synthetic

if TYPE_CHECKING:  # names used in annotations only
    from alllib.study.profile import Profile

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the project: alllib/study/ -> alllib/ -> root


def default_results_dir() -> Path:
    return PACKAGE_ROOT / "results"


@dataclass
class Study:
    cfg: Profile
    results_root: Path  # results/ (shared by the profiles; the synthetic data lives in results/data)
    data_root: Path
    table: pd.DataFrame = field(repr=False)
    data_info: dict

    @property
    def results(self) -> Path:
        """This profile's results: results/<profile name>/."""
        return self.results_root / self.cfg.name

    @property
    def runs_dir(self) -> Path:
        return self.results / "runs"

    @property
    def analysis_dir(self) -> Path:
        return self.results / "analysis"

    @property
    def synthetic(self) -> bool:
        return bool(self.data_info["synthetic"])

    def label(self) -> str:
        """What every table and figure says about its data."""
        init = initialisation(self.cfg.weights)
        data = "SYNTHETIC C-NMC-like data" if self.synthetic else "C-NMC-2019 (real data)"
        return f"{data} | profile {self.cfg.name} | {init}"

    def seeds(self) -> list[int]:
        return self.cfg.seeds

    def split_seed(self, seed: int) -> int:
        """The seed of the subject split a run of `seed` trains on (`Profile.split_seed`)."""
        return self.cfg.split_seed(seed)

    def matrix(self) -> list[tuple[str, int, int]]:
        """(backbone, input size, seed) of every training run, seed-major so early runs complete
        ensembles; within a seed the longest runs first, so parallel jobs finish close together."""

        seeds = self.seeds()
        runs = [
            (bb, size, seed)
            for seed in seeds
            for size in sorted(self.cfg.runs, reverse=True)
            if seed in self.cfg.runs[size]
            for bb in self.cfg.backbones
        ]

        def cost(r):
            return (
                input_pixels(r[1], self.cfg.input_scale) ** 2
                * BACKBONES[r[0]].cpu_cost
                * self.cfg.training_for(r[0]).epochs
            )

        return sorted(runs, key=lambda r: (seeds.index(r[2]), -cost(r)))

    def run_dir(self, backbone: str, size: int, seed: int) -> Path:
        return run_dir(self, backbone, size, seed)

    def runs(self, require_all: bool = True) -> RunSet:
        """The finished runs of the run matrix, in its order; with `require_all`, refuses while any
        is unfinished, naming them and the command that trains them."""
        out, missing = [], []
        for bb, size, seed in self.matrix():
            d = self.run_dir(bb, size, seed)
            (out.append(load_run(d)) if is_complete(d) else missing.append(d.name))
        if missing and require_all:
            data = "" if self.data_info.get("synthetic") else f" --data-dir {self.data_root}"
            raise StudyError(
                f"{len(missing)} of {len(self.matrix())} training runs of profile {self.cfg.name!r} are not "
                f"finished ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''} under {self.runs_dir}); "
                f"train them with `python -m alllib study --profile {self.cfg.name}{data} --results "
                f"{self.results_root}`"
            )
        return RunSet(out)

    def image_checks(self) -> pd.DataFrame:
        """Every labelled image opened and measured (`dataset.check_images`), computed once per state
        of the files (their paths, sizes and modification times): the runner checks before any
        notebook runs, the data chapter reads the result."""

        stamp = hashlib.sha256()  # the files as they are now: a file rewritten in place is checked again
        for p in sorted(self.table["path"]):
            st = os.stat(p)
            stamp.update(f"{p}:{st.st_size}:{st.st_mtime_ns}\n".encode())
        path = self.results / f"image_checks_{self.data_info['fingerprint']}_{stamp.hexdigest()[:8]}.csv"
        if path.is_file():
            return pd.read_csv(path)
        checks = check_images(self.table, progress=False)
        io.write_csv(path, checks)
        return checks


def prepare(
    profile: str = "demo", overrides=(), data_dir: str | None = None, results_dir=None, progress: bool = True
) -> Study:
    """Resolve the profile and the data (generating the synthetic set once when no data is given),
    then read and fingerprint the data tree: the one read of it in this process."""
    return prepare_profile(load_profile(profile, list(overrides or ()), data_dir), results_dir, progress)


def prepare_profile(cfg: Profile, results_dir=None, progress: bool = True) -> Study:
    """The Study of a resolved profile: its data (the synthetic set generated once when the profile
    names no real data), read and fingerprinted."""

    results_root = Path(results_dir).resolve() if results_dir else default_results_dir()
    if cfg.data.source == "synthetic":
        root = ensure_synthetic(results_root / "data", cfg.data, progress=progress)
    else:
        root = Path(cfg.data.root)
    table = read_cnmc(root)
    info = {"root": str(root), "fingerprint": data_fingerprint(table, root), "synthetic": is_synthetic(root)}
    if info["synthetic"]:
        info["generator"] = json.loads((root / "SYNTHETIC.json").read_text())
    return Study(cfg, results_root, root, table, info)
