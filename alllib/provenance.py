"""Provenance: which code, libraries and machine produced a result. Every training run records
`environment()`; every recorded table (calibration, trials, benchmarks) carries `stamp` columns."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd

STAMP_COLUMNS = ("profile", "recorded", "cpus", "gpus", "commit")


def git_commit() -> str:
    try:
        return (
            subprocess.run(
                ["git", "describe", "--always", "--dirty", "--abbrev=10"],
                capture_output=True,
                text=True,
                cwd=Path(__file__).parent,
                timeout=10,
            ).stdout.strip()
            or "unknown"
        )
    except Exception:
        return "unknown"


def environment() -> dict:
    import keras
    import tensorflow as tf

    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "git_commit": git_commit(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "gpus": gpus or ["none (CPU)"],
        "tf_threads": {k: os.environ.get(k, "default") for k in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")},
    }


def stamp(table: pd.DataFrame, profile: str, machine: bool = False) -> pd.DataFrame:
    """`table` with when, with which profile and code (and, with `machine`, on how many CPUs and
    which GPUs) it was measured: the provenance of a recorded calibration or benchmark CSV."""
    env = environment()
    where = {"cpus": env["cpus"], "gpus": ", ".join(env["gpus"])} if machine else {}
    return table.assign(profile=profile, recorded=time.strftime("%Y-%m-%d"), **where, commit=env["git_commit"])
