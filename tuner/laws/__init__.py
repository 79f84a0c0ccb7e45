"""Scaling laws: the registry of law definitions, formulas, and search spaces."""
from tuner.laws.registry import LAWS, Law, Params, Runs, get_law, predict

__all__ = ["LAWS", "Law", "Params", "Runs", "get_law", "predict"]
