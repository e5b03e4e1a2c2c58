"""One training run's machinery: its state, the trainer and its arguments, progress, outputs and manifest, guards, the run lock, preflight and resume checks, passes, distributed launch, trackers."""
