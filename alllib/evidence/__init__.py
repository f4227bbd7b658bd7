"""Evidence about the study itself: benchmarks and the recorded trials and calibrations."""
