"""The FlexiBERT 2.0 model and weight transfer (analytic costs: :mod:`edgetran.space.costs`).

Importing this package registers the model with ``transformers``' ``Auto*`` classes, so that
``AutoModel.from_pretrained(directory)`` loads a saved FlexiBERT model.

Second stage of the data flow, after ``space``.
"""

from pathlib import Path
from typing import Any

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
)

from edgetran.errors import (
    ArchitectureNotFoundError,
    InvalidInputError,
    ModelNotFoundError,
    read_json_file,
)
from edgetran.model.configuration import FlexiBertConfig
from edgetran.model.modeling import (
    FlexiBertForMaskedLM,
    FlexiBertForSequenceClassification,
    FlexiBertModel,
    FlexiBertPreTrainedModel,
)
from edgetran.seeding import torch_seeded
from edgetran.space import Architecture, load_architecture

AutoConfig.register(FlexiBertConfig.model_type, FlexiBertConfig, exist_ok=True)
AutoModel.register(FlexiBertConfig, FlexiBertModel, exist_ok=True)
AutoModelForMaskedLM.register(FlexiBertConfig, FlexiBertForMaskedLM, exist_ok=True)
AutoModelForSequenceClassification.register(
    FlexiBertConfig, FlexiBertForSequenceClassification, exist_ok=True
)

MODEL_CLASSES = {
    cls.__name__: cls
    for cls in (FlexiBertModel, FlexiBertForMaskedLM, FlexiBertForSequenceClassification)
}

#: The model class of each head a user can ask for (``--head`` of ``model init``/``export``).
HEADS: dict[str, type[FlexiBertPreTrainedModel]] = {
    "base": FlexiBertModel,
    "mlm": FlexiBertForMaskedLM,
    "cls": FlexiBertForSequenceClassification,
}


def build_model(
    arch: Architecture, head: str = "base", *, seed: int = 0, **config: Any
) -> FlexiBertPreTrainedModel:
    """A model of ``arch`` with the ``head`` asked for (:data:`HEADS`) and random weights drawn
    from ``seed``, leaving torch's global generator as it was; ``config`` goes to
    :class:`FlexiBertConfig` (``vocab_size``, ``num_labels``, ``position_embedding_type`` …)."""
    if head not in HEADS:
        raise InvalidInputError(f"head={head!r} is invalid; allowed: {', '.join(HEADS)}")
    model_config = FlexiBertConfig(arch, **config)
    with torch_seeded(seed):
        return HEADS[head](model_config)


def model_from_spec(
    spec: str | Path, head: str = "base", *, seed: int = 0, **config: Any
) -> FlexiBertPreTrainedModel:
    """A saved model directory, or an architecture (JSON file or name) built by
    :func:`build_model`."""
    if Path(spec).is_dir():
        return load_model(spec)
    try:
        arch = load_architecture(str(spec))
    except ArchitectureNotFoundError:
        raise ModelNotFoundError(
            f"{spec}: not a saved model directory, an architecture JSON file or a named "
            "architecture"
        ) from None
    return build_model(arch, head, seed=seed, **config)


def saved_model_config(directory: Path) -> dict[str, Any]:
    """The ``config.json`` of the FlexiBERT model saved in ``directory``;
    :class:`ModelNotFoundError` for any other folder (another model type would fail deep inside
    ``transformers``)."""
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise ModelNotFoundError(f"{directory}: not a saved model directory (no config.json)")
    config = read_json_file(config_path, ModelNotFoundError)
    kind = config.get("model_type") if isinstance(config, dict) else None
    if kind != FlexiBertConfig.model_type:
        raise ModelNotFoundError(
            f"{directory}: not a FlexiBERT model (model_type {kind!r}); expected a directory "
            "saved by edgetran (train pretrain, growprune)"
        )
    return config


def load_model(directory: str | Path) -> FlexiBertPreTrainedModel:
    """Load a model saved with ``save_pretrained``, with the head it was saved with."""
    directory = Path(directory)
    saved_model_config(directory)
    config = FlexiBertConfig.from_pretrained(directory)
    names = config.architectures or ["FlexiBertModel"]
    cls = MODEL_CLASSES.get(names[0])
    if cls is None:
        known = ", ".join(MODEL_CLASSES)
        raise ModelNotFoundError(f"{directory}: model class {names[0]!r} unknown; known: {known}")
    return cls.from_pretrained(directory)


__all__ = [
    "HEADS",
    "MODEL_CLASSES",
    "FlexiBertConfig",
    "FlexiBertForMaskedLM",
    "FlexiBertForSequenceClassification",
    "FlexiBertModel",
    "FlexiBertPreTrainedModel",
    "build_model",
    "load_model",
    "model_from_spec",
    "saved_model_config",
]
