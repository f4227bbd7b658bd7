"""alllib: the library behind the ALL ensemble study (Mondal et al. 2021, C-NMC-2019).

Modules are named after the paper's Section 4:
  dataset        4.1.1  reading C-NMC-2019 in its official layout, manifest verification
  synthetic             the labelled synthetic stand-in used when the real data is absent
  preprocessing  4.1.2  subject-disjoint split, centre crop, random oversampling, online augmentation
  models         4.1.3  the five backbones and their input preprocessing
  training       4.2    Adamax, triangular2 cyclic learning rate, early stopping, one training run
  metrics        4.3    WP, WR, WFS, ACC, BA, AUC, kappa, confusion matrices
  ensemble       4.1.3  weighted ensembles of networks (WEN, Eqs. 1-4) and baselines
  variance       5      five-run mean and spread (Table 5)
  stats                 the subject as the unit: bootstrap CIs, paired tests (permutation, bootstrap), Holm
  inference             beyond the paper: temperature scaling and test-time augmentation (validation-fitted)
  gradcam        5      Grad-CAM maps of single models and of the ensemble (Figs. 7-9), concentration tests
  analysis, report      the results chapters' computations and their generated sentences
  summaries             the typed contract between the chapters (ensemble, variance, Grad-CAM)
  exploration, figures  the data chapter's measurements; every figure of the book

The pipeline around them, one concept per module:
  config                the profile schema (pydantic): every setting's type, range and meaning
  study                 the Study: a profile and its data, read once per kernel (`prepare`)
  runs                  the run store: run key, id, `train_or_load`, loading
  runner                notebook execution, the run matrix's schedule, `run_study`
  book                  the generated pages and the jupyter-book build
  recorded              recorded evidence (trial, calibrate), chosen on validation
  provenance            code, library and machine versions of every result
  notebook              the one setup call of every chapter
"""

import os as _os

_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter; set it to 0 to see it

__version__ = "0.2.0"

# Class order used everywhere: index 0 = Hem (normal), index 1 = ALL (cancer), as in the
# preliminary-test labels file of C-NMC-2019 (1 = ALL, 0 = Hem). ALL is the positive class.
CLASSES = ("hem", "all")
CLASS_NAMES = {"hem": "Hem", "all": "ALL"}
