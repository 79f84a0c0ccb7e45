"""Where the shipped search spaces and datasets live (package data) and where runs go."""
from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
SPACES_DIR = PACKAGE / "laws" / "search_spaces"
DATASETS_DIR = PACKAGE / "data" / "shipped"


def runs_dir() -> Path:
    """Default parent of run directories: ``./runs`` of the working directory, absolute."""
    return (Path.cwd() / "runs").resolve()
