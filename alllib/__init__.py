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
  stats                 subject-level bootstrap CIs, McNemar, DeLong, calibration
  gradcam        5      Grad-CAM maps of single models and of the ensemble (Figs. 7-9)
  study                 the runner that executes the notebooks and builds the book
"""

import os as _os

_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter; set it to 0 to see it

__version__ = "0.1.0"

# Class order used everywhere: index 0 = Hem (normal), index 1 = ALL (cancer), as in the
# preliminary-test labels file of C-NMC-2019 (1 = ALL, 0 = Hem). ALL is the positive class.
CLASSES = ("hem", "all")
CLASS_NAMES = {"hem": "Hem", "all": "ALL"}
