"""Using the finished ensemble: predict new cells, write the challenge submission, export the model."""
