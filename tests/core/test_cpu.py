"""core.cpu: the CPU setup every training stage applies first."""

import platform
import sys

import pytest

from core import cpu


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_glibc_accepts_both_heap_thresholds():
    """mallopt answers 0 to a value it refuses, and glibc then silently keeps its own adaptive thresholds: both
    settings must be taken for freed memory to stay in the heap."""
    assert cpu.keep_freed_memory() is True
    assert cpu.keep_freed_memory() is True  # once per process; again is a no-op


def test_setup_sets_the_threads_and_leaves_them_when_not_asked():
    import torch

    n = torch.get_num_threads()
    try:
        cpu.setup(1)
        assert torch.get_num_threads() == 1
        cpu.setup(None)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(n)
