"""tuner: fit dense and sparse LLM scaling laws by Bayesian optimization on libEnsemble."""
__version__ = "0.1.0"
