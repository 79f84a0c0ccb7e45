"""--train conditions: the own grammar of tuner.data.filters, never code."""
import numpy as np
import pytest

from tuner.data import filters
from tuner.errors import TunerError

COLS = {"n_active": np.array([1e8, 5e8, 2e9]), "tokens": np.array([2e9, 1e10, 4e10]),
        "sparsity": np.array([0.0, 0.5, 0.0])}


@pytest.mark.parametrize("text,expected", [
    ("n_active < 1e9", [True, True, False]),
    ("tokens*n_active*6 < 1e20", [True, True, False]),
    ("1e8 < n_active <= 2e9", [False, True, True]),
    ("sparsity == 0 and not n_active > 1e9", [True, False, False]),
    ("(sparsity > 0) | (n_active > 1e9)", [False, True, True]),
    ("~(sparsity > 0) & (tokens >= 1e10)", [False, False, True]),
    ("n_active ** 0.5 / 1e4 >= 1 or -tokens > 0", [True, True, True]),
    ("n_active / 0 > 1", [True, True, True]),  # inf compares like any value
])
def test_conditions(text, expected):
    assert filters.mask(text, COLS, 3).tolist() == expected


@pytest.mark.parametrize("text,msg", [
    ("@np.lib._npyio_impl.os.system('id > f')", "not a condition"),
    ("__import__('os').system('id') < 1", "Call"),
    ("n_active.size > 0", "Attribute"),
    ("n_active[0] > 0", "Subscript"),
    ("'a' < n_active", "Constant"),
    ("n_active < True", "Constant"),
    ("(lambda: 1)() < 2", "Call"),
    ("[n_active][0] < 1", "Subscript"),
    ("n_active < 1 if tokens else 2", "IfExp"),
    ("n_active in tokens", "Compare"),
    ("n_active // 2 > 1", "BinOp"),
    ("bogus < 1", "unknown column"),
    ("n_active + 1", "true/false"),
    ("n_active and tokens", "combines numbers"),
    ("(n_active < 1) + 1 > 0", "true/false value"),
    ("n_active < 1e999", "not a finite number"),
    ("", "empty"),
    ("x" * 2000, "longer than"),
    ("-" * 500 + "n_active < 1", "nested deeper"),
])
def test_refused(text, msg):
    with pytest.raises(TunerError, match=None) as info:
        filters.mask(text, COLS, 3)
    assert msg in str(info.value) and "\n" not in str(info.value)


def test_nothing_is_evaluated(monkeypatch):
    import builtins
    import pandas as pd
    called = []
    monkeypatch.setattr(builtins, "eval", lambda *a, **k: called.append(a))
    monkeypatch.setattr(pd.DataFrame, "eval", lambda *a, **k: called.append(a))
    monkeypatch.setattr(pd.DataFrame, "query", lambda *a, **k: called.append(a))
    filters.mask("n_active < 1e9 and tokens > 1", COLS, 3)
    assert called == []
