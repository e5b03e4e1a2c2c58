"""Test helpers for ftcore and its plugins: tiny real models, tokenizers and contract suites.

``ftcore.testing.fixtures`` builds a tiny random Llama and a byte-level BPE tokenizer trained offline;
the pytest plugin ``ftcore.testing.pytest_plugin`` (registered under ``pytest11``) exposes them as
session fixtures ``tiny_tokenizer_dir`` and ``tiny_model_dir``.
"""
