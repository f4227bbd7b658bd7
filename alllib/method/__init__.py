"""The method of the paper's Section 4, one module per step: the data set (4.1.1), preprocessing (4.1.2),
the models and their ensembles (4.1.3), training (4.2) and the metrics (4.3)."""
