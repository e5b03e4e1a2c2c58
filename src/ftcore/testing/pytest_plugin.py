"""pytest plugin of ftcore (entry point ``pytest11``): tiny model fixtures for ft and plugin tests.

Importing it is cheap; the model is built on first use of a fixture, once per test session.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A byte-level BPE tokenizer (ChatML template, pad and eos tokens) saved with ``save_pretrained``."""
    from ftcore.testing.fixtures import build_tokenizer

    return build_tokenizer(tmp_path_factory.mktemp("tiny-tokenizer"))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer_dir: Path) -> Path:
    """A tiny random Llama (safetensors) with the tiny tokenizer, loadable with ``from_pretrained``."""
    from ftcore.testing.fixtures import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), tiny_tokenizer_dir)


@pytest.fixture
def fresh_plugins():
    """A fresh plugin manager for the test, and again after it (no state leaks between tests)."""
    from ftcore.plugins import disable, reset_plugin_manager

    disable(())
    reset_plugin_manager()
    yield
    disable(())
    reset_plugin_manager()


def pytest_configure(config: pytest.Config) -> None:
    # A stray Hub call must fail at once instead of hanging on a closed network.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
