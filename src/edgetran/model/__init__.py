"""The FlexiBERT 2.0 model, its analytic cost model and weight transfer.

Importing this package registers the model with ``transformers``' ``Auto*`` classes, so that
``AutoModel.from_pretrained(directory)`` loads a saved FlexiBERT model.
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
)

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

__all__ = [
    "FlexiBertConfig",
    "FlexiBertForMaskedLM",
    "FlexiBertForSequenceClassification",
    "FlexiBertModel",
    "FlexiBertPreTrainedModel",
]
