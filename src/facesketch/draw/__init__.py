"""`facesketch draw`: any photo (or natural image) to sketches with a trained checkpoint."""
