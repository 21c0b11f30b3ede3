"""The HTTP API's verbs (`tether serve`): pages of runs, queue counts, API tokens,
Idempotency-Key answers and seen webhook signatures."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from ._base import StoreBase, Tx, params
from ._records import ApiTokenRow, IdempotentAnswer, RunFilter, RunRow
from ._rows import Rows

__all__ = ["ApiVerbs", "filter_params"]


def _no_error(rows: list[RunRow]) -> list[RunRow]:
    """`rows` without their error: read only to find the end reason of a run that
    ended before one was recorded, not asked for."""
    return [replace(r, error=None) for r in rows]


def filter_params(where: RunFilter) -> dict[str, Any]:
    """The parameters of the queries' `_run_filter` (and `:status`) for `where`."""
    return {
        "status": None if where.status is None else where.status.value,
        "workflow": where.workflow,
        "tenant": where.tenant,
        "tag": where.tag,
        "parent": where.parent,
        "after": where.created_after,
        "before": where.created_before,
    }


class ApiVerbs(StoreBase):
    # -- runs and queues ------------------------------------------------------------

    async def list_runs_page(
        self,
        where: RunFilter,
        *,
        limit: int,
        after: tuple[str, datetime] | None = None,
    ) -> list[RunRow]:
        """Runs that match `where`, newest first (ties by id), after the run `after`
        names (its id, and its creation time should it be deleted meanwhile).
        """
        return await self._page("list_runs_page", where, limit, after)

    async def list_run_heads(
        self,
        where: RunFilter,
        *,
        limit: int,
        after: tuple[str, datetime] | None = None,
        error: bool = False,
        state: bool = False,
    ) -> list[RunRow]:
        """The runs `list_runs_page` gives (the same filter, order and cursor) for a list
        that shows what they are, not what they carry: their input, output and initial
        state are not read (None), their error and state only if asked (else None). A
        page of 50 runs of 1 MB inputs read 50 MB to show ids and statuses.

        On SQLite the database pages of a large input may still be read on the way to
        the columns stored after it in the row (into SQLite's cache); none of it
        reaches Python.
        """
        rows = await self._page("list_run_heads", where, limit, after, error=error, state=state)
        return rows if error else _no_error(rows)

    async def run_heads(self, workflow_ids: Sequence[str]) -> list[RunRow]:
        """The runs named, as `list_run_heads` gives them (no input, output, state or
        error read), in the order named; a run not found is left out. For a list of runs
        known by id, a run page's children: read whole, 50 children of 1 MB inputs read
        50 MB to draw their bars."""

        async def body(tx: Tx) -> list[RunRow]:
            found = await tx.all(
                "run_heads", ids=tx.array(list(workflow_ids)), error=False, state=False
            )
            return [tx.rows.run(r) for r in found]

        if not workflow_ids:
            return []
        by_id = {r.workflow_id: r for r in _no_error(await self._tx("read", body))}
        return [by_id[w] for w in workflow_ids if w in by_id]

    async def _page(
        self,
        query: str,
        where: RunFilter,
        limit: int,
        after: tuple[str, datetime] | None,
        **more: Any,
    ) -> list[RunRow]:
        async def body(tx: Tx) -> list[RunRow]:
            rows = await tx.all(
                query,
                **filter_params(where),
                cur=None if after is None else after[0],
                cur_at=None if after is None else after[1],
                limit=limit,
                **more,
            )
            return [tx.rows.run(r) for r in rows]

        return await self._tx("read", body)

    async def jobs_by_queue(self) -> list[tuple[str, str, int]]:
        """(queue, job status, jobs) for every queue and status that has jobs."""
        return await self._list("jobs_by_queue_status", lambda _, r: (r[0], r[1], int(r[2])))

    # -- API tokens -----------------------------------------------------------------

    async def create_api_token(self, row: ApiTokenRow) -> None:
        await self._execute("write", "insert_api_token", **params(row))

    async def list_api_tokens(self) -> list[ApiTokenRow]:
        """Every token, revoked ones included, oldest first."""

        return await self._list("list_api_tokens", Rows.token)

    async def count_api_tokens(self) -> int:
        """Tokens not revoked."""

        async def body(tx: Tx) -> int:
            return int((await tx.one("count_api_tokens"))[0])

        return await self._tx("read", body)

    async def find_api_token(self, token_hash: str, *, at: datetime) -> ApiTokenRow | None:
        """The live token with this hash (its last use noted, at most once a minute)."""

        found = await self._get("api_token_by_hash", Rows.token, hash=token_hash)
        if found is not None and (
            found.last_used_at is None or found.last_used_at < at - timedelta(seconds=60)
        ):

            async def touch(tx: Tx) -> None:
                await tx.execute("touch_api_token", id=found.id, at=at)

            await self._tx("fast", touch, single=True)  # a usage mark, not worth an fsync
        return found

    async def revoke_api_token(self, id_or_name: str, *, at: datetime, by_name: bool = True) -> int:
        """Revoke the live token(s) with this id, or name (unless not `by_name`); how many."""
        return await self._execute(
            "write", "revoke_api_token", id=id_or_name, by_name=by_name, at=at
        )

    # -- Idempotency-Key ------------------------------------------------------------

    async def idempotent_begin(
        self, key: str, request_hash: str, *, at: datetime, keep: float, stale_after: float
    ) -> IdempotentAnswer | None:
        """Reserve an Idempotency-Key: None if reserved now (also when the request that
        reserved it has been in flight for over `stale_after` seconds), else what it
        stands for. Keys are forgotten `keep` seconds after their first use.
        """

        async def body(tx: Tx) -> IdempotentAnswer | None:
            await tx.execute("api_idempotency_expire", before=at - timedelta(seconds=keep))
            if await tx.execute("api_idempotency_reserve", key=key, hash=request_hash, at=at):
                return None
            stale = at - timedelta(seconds=stale_after)
            if await tx.execute(
                "api_idempotency_take", key=key, hash=request_hash, at=at, stale_before=stale
            ):
                return None
            row = await tx.one("api_idempotency_get", key=key)
            return IdempotentAnswer(request_hash=row[0], status=row[1], response=row[2])

        return await self._tx("write", body)

    async def idempotent_finish(self, key: str, status: int | None, response: str | None) -> None:
        """Keep the answer to the key's request, or (`status` None) release the key."""

        async def body(tx: Tx) -> None:
            if status is None:  # the request failed: the key may be used again
                await tx.execute("api_idempotency_release", key=key)
            else:
                await tx.execute(
                    "api_idempotency_finish", key=key, status=status, response=response
                )

        await self._tx("write", body, single=True)

    # -- webhook signatures -------------------------------------------------------------

    async def remember_signature(
        self, hook: str, signature: str, *, expires_at: datetime, at: datetime
    ) -> bool:
        """Note a webhook signature until `expires_at`; False if it was seen already
        (a replay). Signatures past their expiry are forgotten here too.
        """

        async def body(tx: Tx) -> bool:
            await tx.execute("webhook_signatures_expire", at=at)
            return (
                await tx.execute(
                    "remember_webhook_signature", hook=hook, sig=signature, expires=expires_at
                )
                == 1
            )

        return await self._tx("write", body)

    async def forget_signature(self, hook: str, signature: str) -> None:
        """Forget a signature whose request could not be carried out (it may be sent again)."""

        await self._execute(
            "write", "forget_webhook_signature", single=True, hook=hook, sig=signature
        )
