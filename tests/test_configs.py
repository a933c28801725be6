"""The config round trip every stage shares (``edgetran.configs``): ``to_dict`` is JSON-ready,
``from_dict`` is its inverse and refuses an unknown key in the stage's own error, naming the
key and the allowed ones."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pytest

from edgetran.codesign import CodesignConfig, CodesignError
from edgetran.configs import JsonConfig, known_settings
from edgetran.errors import InvalidInputError, SearchError
from edgetran.growprune import GrowPruneError, GrowPruneSettings
from edgetran.profile import ProfileSettings


@dataclass(frozen=True)
class _Toy(JsonConfig):
    config_error = SearchError
    setting_name = "toy setting"

    size: int = 1
    names: tuple[str, ...] = ("a", "b")


def test_known_settings_names_the_unknown_key_and_the_allowed_ones():
    assert known_settings(_Toy, {"size": 2}) == {"size": 2}
    message = "unknown toy setting 'colour'; allowed: size, names"
    with pytest.raises(SearchError, match=re.escape(message)):
        known_settings(_Toy, {"size": 2, "colour": "red"}, SearchError, "toy setting")
    with pytest.raises(InvalidInputError, match="unknown setting 'x'"):  # the defaults
        known_settings(_Toy, {"x": 1})


def test_a_config_round_trips_through_json():
    toy = _Toy(size=3, names=("x",))
    data = toy.to_dict()
    assert data == {"size": 3, "names": ["x"]}  # JSON's form: tuples are lists
    assert json.loads(json.dumps(data)) == data
    assert _Toy.from_dict({"size": 3}) == _Toy(size=3)
    with pytest.raises(SearchError, match="unknown toy setting 'sise'; allowed: size, names"):
        _Toy.from_dict({"sise": 3})


@pytest.mark.parametrize(
    ("config", "error", "setting"),
    [
        (CodesignConfig, CodesignError, "co-design setting"),
        (GrowPruneSettings, GrowPruneError, "grow-and-prune setting"),
        (ProfileSettings, InvalidInputError, "profile setting"),
    ],
)
def test_every_stage_config_shares_the_round_trip(config, error, setting):
    default = config()
    assert config.from_dict(json.loads(json.dumps(default.to_dict()))) == default
    with pytest.raises(error, match=rf"unknown {setting} 'colour'; allowed: \w+, "):
        config.from_dict({**default.to_dict(), "colour": 1})
