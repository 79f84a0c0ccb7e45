"""The public Python API: the names a notebook or script uses; the CLI is a layer over these."""
from tuner.run.fit import FitConfig, coefficients, fit, resume, score

__all__ = ["FitConfig", "coefficients", "fit", "resume", "score"]
