"""ftlmeval's tests: the tiny model comes from ftcore's pytest plugin (``tiny_model_dir``)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def single_thread():
    """One torch thread: the tiny models gain nothing from more, and on a busy machine threads spin."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
