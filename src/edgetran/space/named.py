"""Named architectures and the resolver that turns a CLI argument into an architecture."""

from __future__ import annotations

from pathlib import Path

from edgetran.errors import ArchitectureNotFoundError, read_json_file
from edgetran.space.architecture import Architecture, homogeneous

#: The homogeneous ``sa_sdp`` BERTs of Turc et al. (2019) and Devlin et al. (2019).
NAMED_ARCHITECTURES: dict[str, Architecture] = {
    "bert-tiny": homogeneous(2, 128, 2, 512),
    "bert-mini": homogeneous(4, 256, 4, 1024),
    "bert-small": homogeneous(4, 512, 8, 2048),
    "bert-medium": homogeneous(8, 512, 8, 2048),
    "bert-base": homogeneous(12, 768, 12, 3072),
}


def named_architecture(name: str) -> Architecture:
    """A named reference architecture (``bert-tiny``, ``bert-mini`` …)."""
    try:
        return NAMED_ARCHITECTURES[name]
    except KeyError:
        allowed = ", ".join(NAMED_ARCHITECTURES)
        raise ArchitectureNotFoundError(
            f"unknown architecture {name!r}; known: {allowed}"
        ) from None


def load_architecture(spec: str | Path) -> Architecture:
    """Resolve a named architecture or a JSON file (the project's form or a ``model_dict``).

    A JSON file may also hold an object with an ``arch`` or ``model_dict`` key (as the reference
    datasets and the project's JSONL samples do).
    """
    text = str(spec)
    if text in NAMED_ARCHITECTURES:
        return NAMED_ARCHITECTURES[text]
    path = Path(text)
    if not path.is_file():
        allowed = ", ".join(NAMED_ARCHITECTURES)
        raise ArchitectureNotFoundError(
            f"{text}: neither a JSON file nor a named architecture ({allowed})"
        )
    data = read_json_file(path)
    if isinstance(data, dict):
        for key in ("arch", "model_dict", "architecture"):
            if key in data and isinstance(data[key], dict):
                data = data[key]
                break
    return Architecture.from_dict(data)
