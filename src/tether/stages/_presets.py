"""Config presets: small pydantic mixins for what most stages configure.

Compose them: ``class SummarizeConfig(AIConfig, ConcurrencyConfig): style: str = "brief"``.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = ["AIConfig", "ConcurrencyConfig", "DebugConfig", "FeatureFlags", "StandardConfig"]


class AIConfig(BaseModel):
    """Which model a stage calls, and how (`model` is ``provider:model``)."""

    model: str = "openai:gpt-4.1-mini"
    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    max_tokens: int | None = Field(default=None, gt=0)


class ConcurrencyConfig(BaseModel):
    """How many items a stage works on at once, and how often it retries one."""

    concurrency: int = Field(default=5, ge=1)
    delay_ms: int = Field(default=0, ge=0)
    max_retries: int = Field(default=3, ge=0)


class FeatureFlags(BaseModel):
    """Named switches a stage reads (``ctx.config.feature_flags.get("x", False)``)."""

    feature_flags: dict[str, bool] = Field(default_factory=dict)


class DebugConfig(BaseModel):
    verbose: bool = False
    dry_run: bool = False


class StandardConfig(AIConfig, ConcurrencyConfig, FeatureFlags):
    """AI, concurrency and feature flags together."""
