"""What a run leaves on disk and how it is read back: the run directory, the base model's provenance, files transformers 4.x reads, the loss curve."""
