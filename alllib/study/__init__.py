"""The machinery that runs the method: the profile schema, the Study and its data, the run store,
notebook execution and the run matrix, Slurm, and the labelled synthetic stand-in."""
