"""AI calls that are durable, priced and budgeted."""

from ._anthropic import Anthropic
from ._errors import (
    BudgetExceededError,
    MissingAPIKeyError,
    ObjectValidationError,
    ProviderError,
    UnknownProviderError,
)
from ._fake import FakeModel
from ._openai import OpenAI, OpenAICompatible
from ._port import Provider
from ._prices import Price, Priced, Prices
from ._types import (
    BatchItem,
    BatchItemResult,
    BatchStatus,
    EmbedReply,
    Message,
    ModelReply,
    TextRequest,
    Usage,
)

__all__ = [
    "Anthropic",
    "BatchItem",
    "BatchItemResult",
    "BatchStatus",
    "BudgetExceededError",
    "EmbedReply",
    "FakeModel",
    "Message",
    "MissingAPIKeyError",
    "ModelReply",
    "ObjectValidationError",
    "OpenAI",
    "OpenAICompatible",
    "Price",
    "Priced",
    "Prices",
    "Provider",
    "ProviderError",
    "TextRequest",
    "UnknownProviderError",
    "Usage",
]
