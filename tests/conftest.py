"""Suite-wide test settings."""

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """The test networks are tiny: one torch thread runs them fastest, and on a shared 2-core
    machine OpenMP threads stall on small matmuls (measured 6-50x slower with 2 threads)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
