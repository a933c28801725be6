"""The JSON round trip every config dataclass shares (shared infrastructure, under every stage).

Configs are frozen dataclasses that round-trip through JSON. :class:`JsonConfig` gives one its
``to_dict`` and ``from_dict``; :func:`known_settings` is the check ``from_dict`` makes: a key
that is not a field is refused in one error naming the key and the allowed ones, so a typo in a
stored or hand-written config never passes silently.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, fields
from typing import Any, ClassVar, Self

from edgetran.errors import EdgeTranError, InvalidInputError


def known_settings(
    cls: type,
    data: Mapping[str, Any],
    error: type[EdgeTranError] = InvalidInputError,
    setting: str = "setting",
) -> dict[str, Any]:
    """``data`` as keyword arguments of the dataclass ``cls``, once every key is one of its
    fields; else ``error``: ``unknown {setting} 'key'; allowed: …`` (the fields, in order)."""
    allowed = [f.name for f in fields(cls)]
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise error(f"unknown {setting} {unknown[0]!r}; allowed: {', '.join(allowed)}")
    return dict(data)


class JsonConfig:
    """Mixin of a frozen config dataclass: :meth:`to_dict` and its inverse :meth:`from_dict`.

    A subclass sets ``config_error`` (the typed error of its stage) and ``setting_name`` (what
    one key is called in that error, e.g. ``"co-design setting"``).
    """

    config_error: ClassVar[type[EdgeTranError]] = InvalidInputError
    setting_name: ClassVar[str] = "setting"

    def to_dict(self) -> dict[str, Any]:
        """The config as a JSON-ready dict (tuples become lists, as JSON reads them back)."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """The config from :meth:`to_dict`'s form; an unknown key is ``config_error`` naming it
        and the allowed ones (validation of the values is the constructor's)."""
        return cls(**known_settings(cls, data, cls.config_error, cls.setting_name))
