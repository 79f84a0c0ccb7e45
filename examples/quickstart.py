"""Quickstart: tuner from a notebook or a script.

Run it as ``python examples/quickstart.py`` (or paste the cells into Jupyter). It fits
Chinchilla's law to Epoch AI's digitized runs twice (ytopt and random search, 60
evaluations each), looks at the result and its trials, and compares the two runs in one
table. Runs go to ``runs/quickstart/`` under the working directory (or the folder given as
the first argument).
"""
import sys
from pathlib import Path

import tuner

out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/quickstart")

# %% Fit: a FitResult with .params, .objective, .intervals, .warnings, .trials, .run_dir
result = tuner.fit("hoffmann", "chinchilla_epoch", evals=60, seed=0,
                   run_dir=out / "ytopt", quiet=True)
print(result)
print(result.params)
print(result.trials.head())

# %% Another run, then one table of both (tuner.load_runs takes paths, folders or a glob)
tuner.fit("hoffmann", "chinchilla_epoch", optimizer="random", evals=60, seed=0,
          run_dir=out / "random", quiet=True)
runs = tuner.load_runs(str(out / "*"))
print(runs[["optimizer", "evals", "best_objective", "published_objective", "alpha", "beta"]])

# %% Use the fit: score it, predict a model's loss, plan a compute budget
again = tuner.load(result.run_dir)  # the same object, read from disk
print(tuner.score("hoffmann", "chinchilla_epoch", again)["rmse_log"])
print(tuner.predict("hoffmann", 7e10, 1.4e12, coefficients=again)["loss"])
print(tuner.allocate("hoffmann", [1e21, 5.76e23], coefficients=again))
