"""The shared output helpers of ``edgetran.errors``: what every JSON writer does to numbers
JSON cannot hold."""

from __future__ import annotations

import json
import math

from edgetran.errors import finite_for_json


def test_finite_for_json_turns_nan_and_infinity_into_null_at_any_depth():
    data = {"r2": math.nan, "rows": [(1.0, math.inf), {"x": -math.inf, "n": 3}], "ok": True}
    cleaned = finite_for_json(data)
    assert cleaned == {"r2": None, "rows": [[1.0, None], {"x": None, "n": 3}], "ok": True}
    assert json.loads(json.dumps(cleaned, allow_nan=False)) == cleaned
