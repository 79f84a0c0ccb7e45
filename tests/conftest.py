import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args, cwd=None, timeout=600, env=None):
    """Run ``python -m tuner`` as a user would; returns CompletedProcess (text)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "tuner", *map(str, args)], cwd=cwd or ROOT,
                          capture_output=True, text=True, timeout=timeout, env=full_env)


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture
def good_csv(tmp_path):
    path = tmp_path / "runs.csv"
    path.write_text("run_id,n_total,n_active,tokens,sparsity,loss\n"
                    "a,1e8,1e8,2e9,0,3.1\nb,2e8,1e8,4e9,0.5,2.9\nc,4e8,4e8,8e9,0,2.7\n"
                    "d,1e9,2.5e8,2e10,0.75,2.6\ne,2e9,2e9,4e10,0,2.4\nf,4e9,1e9,8e10,0.75,2.3\n")
    return path
