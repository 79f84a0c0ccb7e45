"""Where the shipped search spaces and datasets live (the project root) and where runs go."""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(os.environ.get("TUNER_HOME", Path(__file__).resolve().parent.parent))
SPACES_DIR = ROOT / "search_spaces"
DATASETS_DIR = ROOT / "datasets"


def runs_dir() -> Path:
    """Default parent of run directories: ``./runs`` of the working directory, absolute."""
    return (Path.cwd() / "runs").resolve()
