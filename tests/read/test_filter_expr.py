"""Filter expressions over scalar features: what is allowed, what it computes."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from dcbulk.errors import PlanError
from dcbulk.filter_expr import parse_filter

FEATURES = {"deform": np.array([0.01, 0.2, 0.05, np.nan]),
            "area_um": np.array([30.0, 50.0, 10.0, 40.0])}


@pytest.mark.parametrize("text, expect", [
    ("deform < 0.1", [True, False, True, False]),
    ("deform < 0.1 & area_um > 20", [True, False, False, False]),
    ("deform < 0.1 and area_um > 20", [True, False, False, False]),
    ("(deform > 0.1) | (area_um < 20)", [False, True, True, False]),
    ("~(deform < 0.1)", [False, True, False, True]),
    ("not deform < 0.1", [False, True, False, True]),
    ("0.02 < deform <= 0.2", [False, True, True, False]),
    ("area_um * 2 - 10 >= 90", [False, True, False, False]),
    ("deform<0.1&area_um>20|area_um<15", [True, False, True, False]),
    ("deform == deform", [True, True, True, False]),
])
def test_filter_values(text, expect):
    expr = parse_filter(text)
    np.testing.assert_array_equal(expr.evaluate(FEATURES), expect)
    assert set(expr.names) <= set(FEATURES)
    assert pickle.loads(pickle.dumps(expr)) == expr


@pytest.mark.parametrize("text, match", [
    ("deform <", "not a valid expression"),
    ("__import__('os')", "not allowed"),
    ("deform.real > 1", "not allowed"),
    ("deform < 'a'", "only numbers"),
    ("1 < 2", "uses no feature"),
    ("[deform]", "not allowed"),
    # numbers taken as true where not 0 (numpy's logical_*): accepted before
    ("not deform", "'deform' is a number, not true/false"),
    ("deform > 0.1 or tilt", "'tilt' is a number, not true/false"),
    ("~area_um & deform < 1", "'area_um' is a number"),
    ("deform", "does not give true/false per event"),  # refused per file before
])
def test_filter_rejects(text, match):
    with pytest.raises(PlanError, match=match):
        parse_filter(text)


def test_filter_empty_and_non_boolean():
    assert parse_filter(None) is None and parse_filter("  ") is None
    with pytest.raises(PlanError, match="true/false"):
        parse_filter("deform * 2")


@pytest.mark.parametrize("typed", ["deform < 0.1 && area_um > 2", "deform < 0.1 || ~~",
                                   "1 < 2 & 3 > 2"])
def test_filter_errors_quote_what_was_typed(typed):
    """A refused filter was quoted as rewritten ('deform < 0.1 and and area_um > 2'), words the
    user never typed."""
    with pytest.raises(PlanError) as info:
        parse_filter(typed)
    assert f"filter '{typed}'" in str(info.value)
