import os, sys, warnings
import pytest, torch

@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield

def pytest_configure(config):
    warnings.filterwarnings('ignore', category=FutureWarning)
