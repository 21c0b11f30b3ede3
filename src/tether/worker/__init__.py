"""Hosts that execute queued runs: a long-running worker and a serverless host."""

from __future__ import annotations

from ._maintenance import MaintenanceReport, maintenance_tick
from ._serverless import ProcessReport, ServerlessHost
from ._worker import Worker

__all__ = ["MaintenanceReport", "ProcessReport", "ServerlessHost", "Worker", "maintenance_tick"]
