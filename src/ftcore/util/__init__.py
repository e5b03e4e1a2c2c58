"""Helpers every layer uses: did-you-mean, cache paths, logging and secret redaction."""
