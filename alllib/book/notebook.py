"""What every chapter notebook does first: one call after the papermill parameters cell.

    study, LABEL = notebook.setup(profile, overrides, data_dir, results_dir)

It prepares the study (reading the data tree once for this kernel), sets the display defaults,
and shows the data label and, for a CPU profile, its departures from the paper."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path

from alllib.book import report
from alllib.book.report import departures
from alllib.method.metrics import HEADLINE, spelled
from alllib.study.prepare import prepare


def quiet_tensorflow() -> None:
    """Import TensorFlow and look for GPUs with the process's stderr (file descriptor 2) sent to
    /dev/null. TensorFlow writes its start-up lines (oneDNN, cudart, "failed call to cuInit" on a
    machine without a GPU) from C++ before its logging is initialised, so TF_CPP_MIN_LOG_LEVEL does
    not hold them back and a kernel would print them into the book. Errors raised later are not
    affected; on a GPU machine the study's provenance table says which devices it used."""
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


LIBRARY_LOG = "library.log"  # under the study's results folder
LIBRARY_LOGGERS = ("tensorflow", "absl", "keras", "h5py", "matplotlib", "py.warnings")


def route_library_logs(path: Path) -> None:
    """Send the libraries' log records and Python's warnings to `path` instead of the page: a
    kernel's stderr becomes part of the book (TensorFlow's retracing warnings name memory addresses).
    Each notebook's records are kept in the study's library.log, headed by the process."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(f"%(asctime)s pid {os.getpid()} %(name)s %(levelname)s: %(message)s"))
    logging.captureWarnings(True)
    warnings.simplefilter("default")  # each warning once per place, into the log
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.propagate = False


def setup(profile: str = "demo", overrides=(), data_dir=None, results_dir=None, show: bool = True):
    import pandas as pd
    from IPython.display import Markdown, display

    quiet_tensorflow()
    pd.set_option("display.precision", 3)
    study = prepare(profile, overrides, data_dir, results_dir, progress=False)
    route_library_logs(study.results / LIBRARY_LOG)
    label = study.label()
    report.data_label(label)  # every table shown from here on carries it in its caption
    if show:
        text = f"**Data: {label}**"
        if study.synthetic:
            text += " (synthetic: the numbers below test the pipeline, not the medicine)"
        gone = departures(study.cfg)
        if gone:
            text += f". Departures from the paper in this profile: {gone} (see the method notes)."
        display(Markdown(text))
        display(Markdown(f"Metrics: {spelled(HEADLINE + ['ECE'])} (see the {{doc}}`glossary </book/glossary>`)."))
    return study, label
