"""pytest plugin of ftcore (entry point ``pytest11``): tiny model fixtures for ft and plugin tests.

Importing it is cheap; the model is built on first use of a fixture, once per test session.
"""

from __future__ import annotations

from pathlib import Path

import pytest

#: Fixtures that build or load a model: a test that uses one (directly or through another fixture) is marked
#: ``model``, so ``-m "not model"`` (``nox -s quick``) leaves every test that loads or trains a model out.
MODEL_FIXTURES = {"tiny_model_dir"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "model: loads or trains a (tiny) model; added by ftcore's pytest plugin")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.model)


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
    from ftcore.contract.plugins import disable, reset_plugin_manager

    disable(())
    reset_plugin_manager()
    yield
    disable(())
    reset_plugin_manager()
