"""The paper's numbers (Mondal et al. 2021), shipped as package data copied from shared/paper/.
tests/test_paper_data.py keeps the copies identical to the source."""

from __future__ import annotations

from importlib import resources

import pandas as pd

CITATION = (
    "Mondal C, Hasan MK, Jawad MT, et al. Acute lymphoblastic leukemia detection from microscopic images "
    "using weighted ensemble of convolutional neural networks. Informatics in Medicine Unlocked 2021."
)
DATA_CITATION = (
    "C-NMC-2019: Gupta A, Gupta R, et al. ISBI 2019 C-NMC challenge: classification in cancer cell "
    "imaging (SBI Lab, IIIT Delhi and AIIMS New Delhi), via TCIA, CC BY 3.0."
)


def table(name: str) -> pd.DataFrame:
    """name: table3_dataset | table4_prelim_test | table5_five_runs_300px | table6_confusion_300px | hyperparameters"""
    with resources.files("alllib").joinpath(f"data/paper/{name}.csv").open() as fh:
        return pd.read_csv(fh)


def hyperparameters() -> dict:
    return dict(zip(*table("hyperparameters")[["name", "value"]].T.values))
