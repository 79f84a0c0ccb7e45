"""Rebuild datasets/ from ../shared/datasets and the published laws: `python datasets/build.py`.

Copies the three measured datasets (adding a `loss_source` column), computes `hoffmann_table3`
from Eq 2 with Table II coefficients, and reconstructs `abnar_reconstructed` from Eq 5 with
Table V coefficients at the compute-optimal total size for each budget and sparsity.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tuner.analysis.allocate import optimal  # noqa: E402
from tuner.laws import Runs, predict  # noqa: E402
from tuner.laws.spaces import published  # noqa: E402

SHARED = HERE.parent.parent / "shared" / "datasets"
CORE = ["run_id", "n_total", "n_active", "tokens", "sparsity", "loss", "loss_source"]

MEASURED = {
    "chinchilla_epoch": ("Epoch AI digitization of Hoffmann et al. 2022 Fig. 4 "
                         "(epoch-research/analyzing-chinchilla)", "no license stated"),
    "frantar_t5": ("Frantar et al. 2023 T5/C4 runs (google-research/jaxpruner bigsparse)",
                   "Apache-2.0"),
    "clark_routing": ("Clark et al. 2022 routed LMs, final step per run "
                      "(google-deepmind/scaling_laws_for_routing)", "CC-BY-4.0"),
}

# Chinchilla Table 3: (parameters, tokens).
TABLE3 = [(400e6, 8.0e9), (1e9, 20.2e9), (10e9, 205.1e9), (67e9, 1.5e12), (175e9, 3.7e12),
          (280e9, 5.9e12), (520e9, 11.0e12), (1e12, 21.2e12), (10e12, 216.2e12)]
ABNAR_BUDGETS = [3e19, 6e19, 1e20, 3e20, 1e21]
ABNAR_SPARSITIES = [0.0, 0.25, 0.5, 0.75, 0.9, 0.95, 0.98]


def write(frame: pd.DataFrame, name: str) -> None:
    frame.to_csv(HERE / f"{name}.csv", index=False, float_format="%.10g")


def main() -> None:
    catalog = {}
    for name, (source, lic) in MEASURED.items():
        src = pd.read_csv(SHARED / f"{name}.csv")
        src.insert(6, "loss_source", "measured")
        write(src, name)
        catalog[name] = {"file": f"{name}.csv", "loss": "measured", "source": source,
                         "license": lic, "origin": f"../shared/datasets/{name}.csv"}

    p2 = published("hoffmann")
    n, d = (np.array(c, dtype=float) for c in zip(*TABLE3))
    runs = Runs(n, n, d, np.zeros_like(n))
    t3 = pd.DataFrame({"run_id": [f"table3_{i}" for i in range(len(n))], "n_total": n,
                       "n_active": n, "tokens": d, "sparsity": 0.0,
                       "loss": predict("hoffmann", p2, runs), "loss_source": "computed"})
    write(t3, "hoffmann_table3")
    catalog["hoffmann_table3"] = {
        "file": "hoffmann_table3.csv", "loss": "computed",
        "source": "Chinchilla Table 3 sizes; loss = Eq 2 with Table II coefficients",
        "license": "derived", "origin": "SPEC.md Table VII row Hoffmann"}

    p5 = published("abnar")
    rows = []
    for c in ABNAR_BUDGETS:
        for s in ABNAR_SPARSITIES:
            # Eq 5's N is the total count: optimise over total size with N_active = (1-S)N.
            a = optimal("abnar", p5, c, s)
            rows.append({"run_id": f"abnar_C{c:.0e}_S{s:g}", "n_total": a.n_total,
                         "n_active": a.n_active, "tokens": a.tokens, "sparsity": s,
                         "loss": a.loss, "loss_source": "reconstructed", "compute": c})
    ab = pd.DataFrame(rows)
    write(ab, "abnar_reconstructed")
    catalog["abnar_reconstructed"] = {
        "file": "abnar_reconstructed.csv", "loss": "reconstructed",
        "source": "5 budgets x 7 sparsities at Eq 5's compute-optimal total size; "
                  "loss = Eq 5 with Table V coefficients",
        "license": "derived", "origin": "SPEC.md Table VII row Abnar"}
    (HERE / "catalog.json").write_text(json.dumps(catalog, indent=2) + "\n")
    print(f"abnar_reconstructed: N_total {ab.n_total.min():.3g}-{ab.n_total.max():.3g}, "
          f"N_active {ab.n_active.min():.3g}-{ab.n_active.max():.3g}, "
          f"tokens {ab.tokens.min():.3g}-{ab.tokens.max():.3g}")


if __name__ == "__main__":
    main()
