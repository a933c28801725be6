"""Schedules: the cycle of modes grow-and-prune walks through, from Python, YAML or JSON.

A schedule is a list whose entries are mode names or mappings ``{mode: NAME, PARAM: VALUE …}``
(the mode's constructor parameters); a file may hold that list or ``{"modes": [...]}``. Two
schedules are named: ``default`` (the reference cycle) and ``grow-only`` (its variant).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edgetran.errors import read_text_file
from edgetran.growprune.modes import GrowPruneError, Mode
from edgetran.plugins import MODES

#: The reference cycle (``configs/config.yaml``).
DEFAULT_SCHEDULE: tuple[str | dict[str, Any], ...] = (
    "grow_attn_head",
    "grow_ffnn",
    "prune_attn_head",
    "prune_ffnn",
)
#: The reference's grow-only variant (``config_grow_only.yaml``).
GROW_ONLY_SCHEDULE: tuple[str | dict[str, Any], ...] = (
    {"mode": "grow_attn_head", "children": 10},
    {"mode": "grow_ffnn", "children": 10, "widths": [1024, 512, 256]},
)
NAMED_SCHEDULES = {"default": DEFAULT_SCHEDULE, "grow-only": GROW_ONLY_SCHEDULE}


def build_schedule(
    entries: Sequence[str | Mapping[str, Any]], *, children: int | None = None
) -> list[Mode]:
    """The modes of a schedule; ``children`` sets the children of grow modes whose entry does
    not set them.

    Raises:
        GrowPruneError: an empty schedule, an unknown mode or a parameter the mode does not
            take (naming the entry and the allowed values).
    """
    if isinstance(entries, str | Mapping) or not entries:
        raise GrowPruneError("schedule: expected a non-empty list of modes")
    modes = []
    for index, entry in enumerate(entries):
        name, params = _entry(index, entry)
        MODES.validate(name)
        cls = MODES.get(name)
        if children is not None and getattr(cls, "kind", None) == "grow":
            params.setdefault("children", children)
        try:
            mode = MODES.create(name, **params)
        except GrowPruneError as err:
            raise GrowPruneError(f"schedule entry {index + 1} ({name}): {err}") from None
        if not isinstance(mode, Mode):
            raise GrowPruneError(f"schedule entry {index + 1}: {name!r} is not a Mode")
        modes.append(mode)
    return modes


def _entry(index: int, entry: Any) -> tuple[str, dict[str, Any]]:
    if isinstance(entry, str):
        return entry, {}
    if isinstance(entry, Mapping) and isinstance(entry.get("mode"), str):
        return entry["mode"], {k: v for k, v in entry.items() if k != "mode"}
    raise GrowPruneError(
        f"schedule entry {index + 1} is {entry!r}; expected a mode name or "
        "{mode: NAME, parameter: value, …}"
    )


def read_schedule(spec: str | Path) -> tuple[str | dict[str, Any], ...]:
    """The entries of a named schedule (``default``, ``grow-only``) or of a YAML/JSON file,
    checked (unknown modes and parameters fail here)."""
    if str(spec) in NAMED_SCHEDULES:
        return NAMED_SCHEDULES[str(spec)]
    path = Path(spec)
    if not path.is_file():
        raise GrowPruneError(
            f"schedule {str(spec)!r}: no such file; named schedules: {', '.join(NAMED_SCHEDULES)}"
        )
    data = _parse(path)
    if isinstance(data, Mapping) and "modes" in data:
        data = data["modes"]
    if not isinstance(data, list):
        raise GrowPruneError(f"{path}: expected a list of modes or {{modes: [...]}}")
    try:
        build_schedule(data)
    except GrowPruneError as err:
        raise GrowPruneError(f"{path}: {err}") from None
    return tuple(data)


def load_schedule(spec: str | Path, *, children: int | None = None) -> list[Mode]:
    """The modes of :func:`read_schedule`'s entries."""
    return build_schedule(read_schedule(spec), children=children)


def _parse(path: Path) -> Any:
    import yaml

    text = read_text_file(path, GrowPruneError)
    try:
        return yaml.safe_load(text)  # JSON is YAML
    except yaml.YAMLError as err:
        problem = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise GrowPruneError(f"{path}: not valid YAML or JSON ({problem})") from None
