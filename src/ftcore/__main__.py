"""``python -m ftcore`` runs the ``ft`` CLI."""

from ftcore.cli import main

main()
