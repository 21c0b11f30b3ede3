"""Chaos for long runs: worker processes SIGKILLed (or SIGTERMed) at random, connections dropped.

Run: ``.venv/bin/python bench/chaos.py --backend postgresql --runs 1000 --mode kill``
(``--backend sqlite``; ``--mode graceful`` stops workers with SIGTERM only,
``--mode drops`` stops none and only drops PostgreSQL connections, ``--mode cancel``
kills workers as ``kill`` does while a canceller process cancels a share of the
runs, ``--cancel-share``, half of them during a long async step; ``--url``
picks the database, ``--seed`` replays a schedule). Without ``--url`` it works in a database of
its own: a new PostgreSQL database on the test server, dropped afterwards
unless an invariant failed (``$TETHER_TEST_POSTGRES_URL`` names another
server to create it on), or a SQLite file in a temporary folder.

Prints progress, every broken invariant, and a final line with runs, kills,
restarts, dropped connections and whether every invariant held; exits 0 if
they all held, 1 if not. The harness is the one the chaos tests use
(``tests/chaos/_harness.py``); ``tests/chaos/_invariants.py`` lists the invariants.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.chaos._harness import MODES, ChaosConfig, plain_dsn, run_chaos  # noqa: E402

ADMIN_URL = os.environ.get("TETHER_TEST_POSTGRES_URL", "postgresql://127.0.0.1:5432/test")


def _create_pg_database(admin_url: str) -> tuple[str, str]:
    """A new, empty database on the server of `admin_url`: (its URL, its name)."""
    import psycopg

    name = f"tether_chaos_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(plain_dsn(admin_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(admin_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", "", "")), name


def _drop_pg_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(plain_dsn(admin_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("postgresql", "sqlite"), required=True)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--mode", choices=MODES, default="kill")
    parser.add_argument("--url", help="database to use (default: a new one of its own)")
    parser.add_argument("--seed", type=int, help="replay the schedule of an earlier run")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4, help="jobs at once per worker")
    parser.add_argument(
        "--cancel-share", type=float, default=0.2, help="share of the runs cancelled (cancel mode)"
    )
    parser.add_argument("--folder", type=Path, help="ledger and worker logs (default: temporary)")
    parser.add_argument("--keep", action="store_true", help="keep the folder even if all held")
    args = parser.parse_args()
    if not 0 <= args.cancel_share <= 1:
        parser.error(f"--cancel-share is a share of the runs, from 0 to 1: got {args.cancel_share}")
    if args.url and not args.url.startswith(
        ("postgresql:", "postgres:") if args.backend == "postgresql" else ("sqlite:",)
    ):
        parser.error(f"--url {args.url!r} is not a {args.backend} URL")

    # the harness terminates connections on purpose: the pool's complaints are noise here
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
    folder = args.folder or Path(tempfile.mkdtemp(prefix="tether-chaos-"))
    url, own_db = args.url, None
    if url is None and args.backend == "postgresql":
        url, own_db = _create_pg_database(ADMIN_URL)
    elif url is None:
        url = f"sqlite:///{folder}/tether.db"
    result = None
    try:
        result = run_chaos(
            ChaosConfig(
                url=url,
                folder=folder,
                mode=args.mode,
                runs=args.runs,
                workers=args.workers,
                concurrency=args.concurrency,
                cancel_share=args.cancel_share,
                seed=args.seed,
                progress=lambda line: print(line, flush=True),
            )
        )
    finally:
        if own_db is not None and result is not None and result.ok:
            _drop_pg_database(ADMIN_URL, own_db)
        elif own_db is not None:
            print(f"database kept for inspection: {url} (drop it when done)")
    for line in result.violations[:50]:
        print("VIOLATION", line)
    if len(result.violations) > 50:
        print(f"... and {len(result.violations) - 50} more violations")
    if result.ok and not args.keep and args.folder is None:
        shutil.rmtree(folder, ignore_errors=True)
    else:
        print(f"ledger and worker logs kept in {folder}")
    print(result.summary())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
