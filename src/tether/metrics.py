"""Prometheus metrics, read from the database: ``GET /metrics`` on `tether serve`.

Everything comes from the store, so one scrape describes every worker and
process sharing the database, whichever process serves it: runs by workflow
and status, latency histograms of steps and jobs (over every recorded row; a
prune lowers them, which Prometheus reads as a counter reset), queue depth
and the age of the oldest waiting job, AI calls, tokens (with the cached input
and reasoning output among them) and cost by model (and the calls of no known
price, which the cost leaves out),
and the live processes that drive runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from ._runner import PROCESS_SCOPE
from .errors import InvalidArgumentError
from .store import Histogram, RunStatus, Store

__all__ = ["CONTENT_TYPE", "render_metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _labels(**labels: str) -> str:
    def escaped(value: str) -> str:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')

    return "{" + ",".join(f'{k}="{escaped(str(v))}"' for k, v in labels.items()) + "}"


def _family(name: str, kind: str, help_: str, samples: Iterable[str]) -> list[str]:
    return [f"# HELP {name} {help_}", f"# TYPE {name} {kind}", *samples]


def _histogram(name: str, help_: str, h: Histogram) -> list[str]:
    samples = [f'{name}_bucket{{le="{le:g}"}} {n}' for le, n in h.buckets]
    samples += [f'{name}_bucket{{le="+Inf"}} {h.count}', f"{name}_sum {h.total:.6f}",
                f"{name}_count {h.count}"]  # fmt: skip
    return _family(name, "histogram", help_, samples)


async def render_metrics(store: Store, now: datetime) -> str:
    """The Prometheus text exposition of what `store` holds at `now`."""
    if not isinstance(now, datetime) or now.utcoffset() is None:
        # a naive now raised a bare TypeError, and only once a queue or process existed
        raise InvalidArgumentError(
            f"render_metrics(store, now) takes an aware datetime, got {now!r}; "
            "e.g. datetime.now(UTC) or app.clock.now()"
        )
    lines = _run_lines(await store.run_counts())
    for which, help_ in (
        ("step_seconds", "Completed steps, from their start to their completion."),
        ("job_wait_seconds", "Ended jobs, from when they were last due to their last claim."),
        ("job_run_seconds", "Done jobs, from their claim to their end."),
    ):
        lines += _histogram(f"tether_{which}", help_, await store.latency_histogram(which))
    lines += _queue_lines(await store.queue_depths(), now)
    lines += _ai_lines(await store.ai_usage(group_by="model"))
    lines += _worker_lines(await store.list_locks(PROCESS_SCOPE), now)
    return "\n".join(lines) + "\n"


def _run_lines(counts: list[tuple[str, str, int]]) -> list[str]:
    """Every status of each workflow that has runs, 0 where none: a status left out
    when its last run left it made the gauge vanish instead of reading 0 (an alert on
    ``tether_runs{status="running"} == 0`` never fired, a sum over it was empty)."""
    found = {(w, s): n for w, s, n in counts}
    samples = [
        f"tether_runs{_labels(workflow=w, status=s.value)} {found.pop((w, s.value), 0)}"
        for w in sorted({w for w, _, _ in counts})
        for s in RunStatus
    ]
    samples += [f"tether_runs{_labels(workflow=w, status=s)} {n}" for (w, s), n in found.items()]
    return _family("tether_runs", "gauge", "Runs by workflow and status.", samples)


def _queue_lines(depths: list[Any], now: datetime) -> list[str]:
    jobs, ages = [], []
    for d in depths:
        jobs.append(f"tether_queue_jobs{_labels(queue=d.queue, state='queued')} {d.queued}")
        jobs.append(f"tether_queue_jobs{_labels(queue=d.queue, state='claimed')} {d.claimed}")
        age = 0.0 if d.oldest_due is None else max(0.0, (now - d.oldest_due).total_seconds())
        ages.append(f"tether_queue_oldest_job_age_seconds{_labels(queue=d.queue)} {age:.3f}")
    return [
        *_family("tether_queue_jobs", "gauge", "Jobs waiting and claimed, by queue.", jobs),
        *_family("tether_queue_oldest_job_age_seconds", "gauge",
                 "How long the oldest waiting job of each queue has been due.", ages),
    ]  # fmt: skip


# parts of the input and output counts, each its own family: as more kinds of
# `tether_ai_tokens_total`, a sum over its kinds counted them twice
_AI_PARTS = (
    ("cached_input", "cached_input_tokens",
     "AI input tokens read from a prompt cache, by model: a part of kind=input."),
    ("cache_write", "cache_write_tokens",
     "AI input tokens written to a prompt cache, by model: a part of kind=input."),
    ("reasoning", "reasoning_tokens",
     "AI output tokens spent reasoning, by model: a part of kind=output."),
)  # fmt: skip


def _ai_lines(rows: list[Any]) -> list[str]:
    calls, tokens, cost, unpriced = [], [], [], []
    for r in rows:
        m = r.group or ""
        calls.append(f"tether_ai_calls_total{_labels(model=m)} {r.calls}")
        unpriced.append(f"tether_ai_unpriced_calls_total{_labels(model=m)} {r.unknown_cost_calls}")
        tokens.append(f"tether_ai_tokens_total{_labels(model=m, kind='input')} {r.input_tokens}")
        tokens.append(f"tether_ai_tokens_total{_labels(model=m, kind='output')} {r.output_tokens}")
        cost.append(f"tether_ai_cost_usd_total{_labels(model=m)} {r.cost_usd:.6f}")
    parts: list[str] = []
    for part, field, help_ in _AI_PARTS:
        name = f"tether_ai_{part}_tokens_total"
        samples = (f"{name}{_labels(model=r.group or '')} {getattr(r, field)}" for r in rows)
        parts += _family(name, "counter", help_, samples)
    return [
        *_family("tether_ai_calls_total", "counter", "AI calls, by provider:model.", calls),
        *_family("tether_ai_tokens_total", "counter", "AI tokens, by model and kind (input and output in full).", tokens),
        *parts,
        *_family("tether_ai_cost_usd_total", "counter",
                 "AI cost in USD of the priced calls, by model.", cost),
        # a model with no known price read as $0 above, with nothing saying the sum was
        # short: the calls it leaves out are counted here, never as free
        *_family("tether_ai_unpriced_calls_total", "counter",
                 "AI calls that used tokens at no known price (not in the cost), by model.",
                 unpriced),
    ]  # fmt: skip


# a process silent this long has gone for good: its series leave the exposition (each
# restart of a worker is a new process; kept, their series grew without end)
GONE_AFTER = 3600.0


def _worker_lines(locks: list[Any], now: datetime) -> list[str]:
    up, seen = [], []
    for row in locks:
        alive = row.active_at(now)
        age = max(0.0, (now - row.heartbeat_at).total_seconds())
        if not alive and age > GONE_AFTER:
            continue
        up.append(f"tether_worker_up{_labels(worker=row.holder)} {1 if alive else 0}")
        seen.append(f"tether_worker_heartbeat_age_seconds{_labels(worker=row.holder)} {age:.3f}")
    return [
        *_family("tether_worker_up", "gauge", "1 while a process that drives runs is alive.", up),
        *_family("tether_worker_heartbeat_age_seconds", "gauge",
                 "Seconds since each process last renewed its claim.", seen),
    ]  # fmt: skip
