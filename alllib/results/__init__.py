"""The results chapters' computations (the ensemble ablation and its baselines, the seeds' spread,
Grad-CAM, the subject-level statistics, calibration, the reproduction verdict, the published methods,
the data chapter), the paper's numbers, and the typed summaries the chapters hand each other."""
