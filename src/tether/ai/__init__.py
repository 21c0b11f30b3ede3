"""AI calls that are durable, priced and budgeted."""

from ._anthropic import Anthropic
from ._budget import Budget, Spend, budget_stops
from ._client import WorkflowAI, batches_out, cancel_open_batches, open_batches, stop_batches
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
from ._providers import Providers
from ._results import BatchOutcome, BatchResult, EmbedResult, ObjectResult, TextResult
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
    "BatchOutcome",
    "BatchResult",
    "BatchStatus",
    "Budget",
    "BudgetExceededError",
    "EmbedReply",
    "EmbedResult",
    "FakeModel",
    "Message",
    "MissingAPIKeyError",
    "ModelReply",
    "ObjectResult",
    "ObjectValidationError",
    "OpenAI",
    "OpenAICompatible",
    "Price",
    "Priced",
    "Prices",
    "Provider",
    "ProviderError",
    "Providers",
    "Spend",
    "TextRequest",
    "TextResult",
    "UnknownProviderError",
    "Usage",
    "WorkflowAI",
    "batches_out",
    "budget_stops",
    "cancel_open_batches",
    "open_batches",
    "stop_batches",
]
