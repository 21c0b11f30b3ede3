"""Chaos: real worker processes, real SIGKILL/SIGTERM, real dropped connections.

Each test submits a few hundred runs of the chaos workflow (`_flows.py`),
keeps stopping and restarting three worker processes until every run has
ended (on PostgreSQL it also terminates every connection now and then), lets
the workers idle and checks the invariants of `_invariants.check_invariants`
against tether's records and the side-effect ledger the steps wrote.

The cancel test also runs a canceller process that cancels a fifth of the runs,
half of them while a long async step awaits, and checks what a cancel promises
(`_cancels.check_cancelled_step`); it runs a few dozen runs (TETHER_CHAOS_CANCEL_RUNS).

A failure prints the seed; replay its schedule with TETHER_CHAOS_SEED=<seed>.
Longer runs: ``bench/chaos.py`` (``--mode cancel`` for the cancel mode).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ._harness import ChaosConfig, ChaosResult, run_chaos

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]

RUNS = int(os.environ.get("TETHER_CHAOS_RUNS", "200"))
CANCEL_RUNS = int(os.environ.get("TETHER_CHAOS_CANCEL_RUNS", "50"))


def _chaos(url: str, folder: Path, mode: str, runs: int = RUNS) -> ChaosResult:
    seed = os.environ.get("TETHER_CHAOS_SEED")
    result = run_chaos(
        ChaosConfig(
            url=url,
            folder=folder,
            mode=mode,
            runs=runs,
            seed=int(seed) if seed else None,
            progress=print,
        )
    )
    print(result.summary())
    return result


def _explain(result: ChaosResult) -> str:
    shown = "\n".join(result.violations[:20])
    more = len(result.violations) - 20
    return f"{result.summary()}\nreplay with TETHER_CHAOS_SEED={result.seed}\n{shown}" + (
        f"\n... and {more} more" if more > 0 else ""
    )


def test_sigkilled_workers_repeat_only_their_in_flight_steps(
    database_url: str, tmp_path: Path
) -> None:
    result = _chaos(database_url, tmp_path / "chaos", "kill")
    assert result.kills > 0, "the chaos loop never killed a worker"
    assert result.ok, _explain(result)


def test_sigterm_stops_workers_without_repeating_a_step(database_url: str, tmp_path: Path) -> None:
    result = _chaos(database_url, tmp_path / "chaos", "graceful")
    assert result.terms > 0, "the chaos loop never stopped a worker"
    assert result.ok, _explain(result)


def test_cancels_stop_the_steps_of_their_runs_among_sigkilled_workers(
    database_url: str, tmp_path: Path
) -> None:
    result = _chaos(database_url, tmp_path / "chaos", "cancel", CANCEL_RUNS)
    assert result.kills > 0, "the chaos loop never killed a worker"
    # (before cancels stopped steps, none was: each long step ran on to its end)
    assert result.stopped > 0, f"no cancel stopped a step running: {_explain(result)}"
    assert result.ok, _explain(result)
