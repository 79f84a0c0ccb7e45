import json

import numpy as np
import pandas as pd
import pytest

from tuner.data.datasets import catalog, load
from tuner.errors import TunerError
from tuner.laws import LAWS
from tuner.laws.spaces import load_space, paper_space, parse_assignments, published

PUBLISHED = {  # SPEC.md's table, written here only to check the space files against it
    "hoffmann": {"e": 1.69, "a": 406.4, "b": 410.7, "alpha": 0.34, "beta": 0.28},
    "kaplan": {"aN": 0.076, "aD": 0.103, "Nc": 6.4e13, "Dc": 1.8e13},
    "abnar": {"e": 0.94, "a": 16612.5, "b": 5455.67, "c": 0.4598, "d": 17.26, "alpha": 0.5962,
              "beta": 0.3954, "lambda": -0.1666, "delta": 0.1603, "gamma": 0.1595},
    "generalized": {"e": 1.69, "a": 406.4, "b": 410.7, "c": 93.45, "alpha": 0.34, "beta": 0.28,
                    "gamma": 0.01},
}


@pytest.mark.parametrize("law", sorted(LAWS))
def test_shipped_space_loads_with_published_defaults(law):
    space = paper_space(law)
    assert space.all_names == list(LAWS[law].params)
    for d in space.dims:
        assert d.lower < d.default < d.upper
    if law in PUBLISHED:
        assert published(law) == pytest.approx(PUBLISHED[law])


def test_large_coefficients_are_log_scale():
    space = paper_space("hoffmann")
    logs = {d.name: d.log for d in space.dims}
    assert logs["a"] and logs["b"] and not logs["alpha"]
    u = space.encode(space.default())
    assert space.decode(u) == pytest.approx(space.default())


def test_fixed_coefficients():
    space = paper_space("hoffmann").with_fixed({"alpha": 0.34})
    assert "alpha" not in space.names and space.default()["alpha"] == 0.34
    with pytest.raises(TunerError, match="not a coefficient"):
        paper_space("hoffmann").with_fixed({"zeta": 1})


def _write_space(tmp_path, mutate):
    data = json.loads(paper_space("hoffmann").source and open(paper_space("hoffmann").source).read())
    mutate(data)
    path = tmp_path / "space.json"
    path.write_text(json.dumps(data))
    return path


def test_bad_spaces(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(TunerError, match="broken.json: not a valid ConfigSpace"):
        load_space("hoffmann", broken)
    with pytest.raises(TunerError, match="not found"):
        load_space("hoffmann", tmp_path / "missing.json")

    def drop_beta(d):
        d["hyperparameters"] = [h for h in d["hyperparameters"] if h["name"] != "beta"]
    with pytest.raises(TunerError, match="missing \\['beta'\\]"):
        load_space("hoffmann", _write_space(tmp_path, drop_beta))

    def constant_alpha(d):
        d["hyperparameters"] = [h if h["name"] != "alpha" else
                                {"type": "constant", "name": "alpha", "value": 0.3, "meta": None}
                                for h in d["hyperparameters"]]
    space = load_space("hoffmann", _write_space(tmp_path, constant_alpha))
    assert space.fixed == {"alpha": 0.3}


def test_parse_assignments():
    assert parse_assignments("a=1, b=2e3") == {"a": 1.0, "b": 2000.0}
    with pytest.raises(TunerError, match="'b' has a non-numeric"):
        parse_assignments("a=1,b=x")


def test_shipped_datasets():
    cat = catalog()
    assert set(cat) == {"chinchilla_epoch", "frantar_t5", "clark_routing", "hoffmann_table3",
                        "abnar_reconstructed"}
    ce = load("chinchilla_epoch")
    assert len(ce) == 240 and ce.dropped == 5 and ce.loss_kind == "measured"
    assert len(load("chinchilla_epoch", drop_outliers=False)) == 245
    assert len(load("frantar_t5")) == 48 and len(load("clark_routing")) == 223
    assert load("hoffmann_table3").loss_kind == "computed" and len(load("hoffmann_table3")) == 9
    ab = load("abnar_reconstructed")
    assert ab.loss_kind == "reconstructed" and len(ab) == 35
    f = ab.frame
    np.testing.assert_allclose(f.n_active, (1 - f.sparsity) * f.n_total, rtol=1e-8)
    np.testing.assert_allclose(f.tokens, f.compute / (6 * f.n_active), rtol=1e-8)


def test_abnar_reconstructed_is_compute_optimal():
    from tuner.analysis.allocate import loss_at
    f = load("abnar_reconstructed").frame
    p = published("abnar")
    for _, row in f.iterrows():
        n = row.n_active * np.array([0.9, 1.0, 1.1])
        loss = loss_at("abnar", p, row.compute, row.sparsity, n)
        assert loss[1] <= loss.min() + 1e-12


BAD = [
    ("n_total,n_active,tokens,sparsity\n1,1,1,0\n", "missing column\\(s\\) loss"),
    ("n_total,n_active,tokens,sparsity,loss\n1e8,1e8,-5,0,3\n", "row 1 \\(line 2\\), field tokens"),
    ("n_total,n_active,tokens,sparsity,loss\n1e8,1e8,1e9,0,3\n0,0,1e9,0,3\n",
     "row 2 \\(line 3\\), field n_active"),
    ("n_total,n_active,tokens,sparsity,loss\n1e8,1e8,1e9,0,3\n0,1e8,1e9,0,3\n",
     "row 2 \\(line 3\\), field n_total"),
    ("n_total,n_active,tokens,sparsity,loss\n1e8,1e8,1e9,1.0,3\n", "field sparsity"),
    ("n_total,n_active,tokens,sparsity,loss\n1e8,1e8,1e9,-0.1,3\n", "field sparsity"),
    ("n_total,n_active,tokens,sparsity,loss\n1e8,1e8,1e9,0,nan\n", "field loss"),
    ("n_total,n_active,tokens,sparsity,loss\n1e8,1e8,1e9,0,abc\n", "field loss"),
    ("n_total,n_active,tokens,sparsity,loss\n1e8,2e8,1e9,0,3\n", "field n_active"),
    ("", "not a readable CSV"),
]


@pytest.mark.parametrize("text,message", BAD)
def test_bad_csv_names_the_problem(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(TunerError, match=message):
        load(str(path))


def test_unknown_and_missing_dataset(tmp_path):
    with pytest.raises(TunerError, match="unknown dataset 'nope'"):
        load("nope")
    with pytest.raises(TunerError, match="not found"):
        load(str(tmp_path / "absent.csv"))


def test_user_csv(good_csv):
    ds = load(str(good_csv))
    assert len(ds) == 6 and ds.loss_kind == "unknown"
