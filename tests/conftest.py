import pytest
import torch

# Unit tests use tiny tensors: one thread is fastest for them, and it keeps the suite's timing sane when
# other processes share the two cores (OpenMP threads spin-waiting for a busy core slow tiny ops 100-fold).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
