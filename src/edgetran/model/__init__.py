"""The FlexiBERT 2.0 model and weight transfer (analytic costs: :mod:`edgetran.space.costs`).

Importing this package registers the model with ``transformers``' ``Auto*`` classes, so that
``AutoModel.from_pretrained(directory)`` loads a saved FlexiBERT model.
"""

from pathlib import Path

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
)

from edgetran.errors import ModelNotFoundError
from edgetran.model.configuration import FlexiBertConfig
from edgetran.model.modeling import (
    FlexiBertForMaskedLM,
    FlexiBertForSequenceClassification,
    FlexiBertModel,
    FlexiBertPreTrainedModel,
)

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


def load_model(directory: str | Path) -> FlexiBertPreTrainedModel:
    """Load a model saved with ``save_pretrained``, with the head it was saved with."""
    directory = Path(directory)
    if not (directory / "config.json").is_file():
        raise ModelNotFoundError(f"{directory}: not a saved model directory (no config.json)")
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
    "load_model",
]
