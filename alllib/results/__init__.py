"""The results chapters' computations (ensemble ablation, five runs, Grad-CAM, the subject-level
statistics, calibration, the published methods, the data chapter), the paper's numbers, and the typed
summaries the chapters hand each other."""
