"""What every chapter notebook does first: one call after the papermill parameters cell.

    study, LABEL = notebook.setup(profile, overrides, data_dir, results_dir)

It prepares the study (reading the data tree once for this kernel), sets the display defaults,
and shows the data label and, for a CPU profile, its departures from the paper."""

from __future__ import annotations

import warnings


def setup(profile: str = "demo", overrides=(), data_dir=None, results_dir=None, show: bool = True):
    import pandas as pd
    from IPython.display import Markdown, display

    from .report import departures
    from .study import prepare

    warnings.filterwarnings("ignore", category=UserWarning)
    pd.set_option("display.precision", 3)
    study = prepare(profile, overrides, data_dir, results_dir, progress=False)
    label = study.label()
    if show:
        text = f"**Data: {label}**"
        if study.synthetic:
            text += " (synthetic: the numbers below test the pipeline, not the medicine)"
        gone = departures(study.cfg)
        if gone:
            text += f". Departures from the paper in this profile: {gone} (see the method notes)."
        display(Markdown(text))
    return study, label
