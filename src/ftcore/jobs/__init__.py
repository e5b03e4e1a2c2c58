"""What the commands run: train, evaluate, benchmark, merge, generate, recommend, export, upload, config import, plugin scaffolding."""
