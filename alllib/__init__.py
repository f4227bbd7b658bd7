"""alllib: the library behind the ALL ensemble study (Mondal et al. 2021, C-NMC-2019).

The folders follow the data's way:

  method/    the method of Section 4, one module per step (SECTION_4 below maps each step to its function):
             dataset, preprocessing, models, training, ensemble, metrics
  study/     the machinery that runs it: the profile schema (profile), the Study and its data (prepare),
             the run store (runs), notebook execution and the run matrix (runner), Slurm (cluster),
             the labelled synthetic stand-in (synthetic)
  results/   the chapters' computations: the ensemble ablation (ablation, from the blocks in analysis),
             the ensemble against its baselines and the crop (baselines), the reproduction verdict
             (verdict), the seeds' spread (variance), Grad-CAM (gradcam), the subject as the unit (stats),
             calibration and TTA (inference), the published methods (comparison), the data chapter
             (exploration), the paper's numbers (paper), and the typed chapter summaries (summaries)
  use/       using the finished ensemble: predict, submission, export (predict)
  book/      the pages: each chapter's setup (notebook), sentences (report), figures, the generated pages
             (pages), the model card, an executed notebook made a page (postprocess)
  evidence/  benchmarks (bench) and recorded trials and calibrations (recorded)
  pipeline   the whole study as `make book` runs it; __main__ the command line

Beneath them: errors, io (atomic writes), backup (a training run's checkpoints), provenance.
Nothing imports a folder listed after its own (tests/test_layering.py).
"""

import os as _os

_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter; set it to 0 to see it

__version__ = "0.2.0"

# Class order used everywhere: index 0 = Hem (normal), index 1 = ALL (cancer), as in the
# preliminary-test labels file of C-NMC-2019 (1 = ALL, 0 = Hem). ALL is the positive class.
CLASS_NAMES = {"hem": "Hem", "all": "ALL"}

# Each step of the paper's Section 4 (and the results of Section 5 that the book reproduces): the section,
# what it is, and where it lives as module:function (tests/test_layering.py imports each one).
SECTION_4 = (
    ("4.1.1", "C-NMC-2019 in its official layout", "alllib.method.dataset:read_cnmc"),
    ("4.1.1", "the official manifest check", "alllib.method.dataset:verify_manifest"),
    ("4.1.2", "subject-disjoint train/validation split (Table 3)", "alllib.method.preprocessing:subject_split"),
    ("4.1.2", "centre crop 450 -> 300 px", "alllib.method.preprocessing:center_crop"),
    ("4.1.2", "random oversampling of Hem", "alllib.method.preprocessing:random_oversampling"),
    ("4.1.2", "online augmentation (flips, rotation, zoom, shift)", "alllib.method.preprocessing:augment"),
    ("4.1.3", "the five ImageNet-pretrained backbones", "alllib.method.models:build_model"),
    ("4.1.3", "weighted ensemble of networks, Eqs. 1-4", "alllib.method.ensemble:wen"),
    ("4.1.3", "ensemble weights from F1, AUC or kappa", "alllib.method.ensemble:model_weights"),
    ("4.2", "Adamax", "alllib.method.training:make_optimizer"),
    ("4.2", "triangular2 cyclic learning rate, Eq. 5", "alllib.method.training:triangular2"),
    ("4.2", "one training run with early stopping", "alllib.method.training:fit"),
    ("4.3", "WP, WR, WFS (Eq. 8), ACC, BA (Eq. 6), AUC, kappa", "alllib.method.metrics:evaluate"),
    ("5", "five runs and their variance (Table 5)", "alllib.results.variance:five_run_table"),
    ("5", "Grad-CAM maps (Figs. 7-9)", "alllib.results.gradcam:class_activation_maps"),
)
