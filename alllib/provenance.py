"""Provenance: which code, libraries and machine produced a result. Every training run records
`environment()`; every recorded table (calibration, trials, benchmarks) carries `stamp` columns."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd

STAMP_COLUMNS = ("profile", "recorded", "cpus", "gpus", "commit")


class Phases:
    """Wall seconds per named phase of one piece of work (a training run), in the order first met;
    `with phases("validation"): ...` adds the block's time to its phase."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + float(seconds)

    @contextlib.contextmanager
    def __call__(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t0)


def process_seconds() -> float | None:
    """Seconds since this process started (Linux: /proc), None where that cannot be read: the
    kernel start and imports a training notebook pays before its first cell's work."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def git_commit() -> str:
    """`git describe` of the code; where the tree travelled without its .git (a lent GPU machine), the
    value the sender put in ALLLIB_GIT_COMMIT."""
    if os.environ.get("ALLLIB_GIT_COMMIT"):
        return os.environ["ALLLIB_GIT_COMMIT"]
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


def _gpus(backend: str) -> list[str]:
    if backend == "jax":
        import jax

        return [d.device_kind for d in jax.devices() if d.platform == "gpu"]
    if backend == "torch":
        import torch

        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    import tensorflow as tf

    return [d.name for d in tf.config.list_physical_devices("GPU")]


def environment() -> dict:
    from importlib import metadata

    import keras

    backend = keras.backend.backend()
    try:
        tf_version = metadata.version("tensorflow")
    except metadata.PackageNotFoundError:
        tf_version = "not installed"
    gpus = _gpus(backend)
    return {
        "python": platform.python_version(),
        "tensorflow": tf_version,
        "keras": keras.__version__,
        "keras_backend": backend,
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
