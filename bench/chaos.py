"""Chaos: sagas on a stack while engines, workers and servers are killed at random.

Run by hand:

    python bench/chaos.py --stack kafka-postgres --sagas 20000 --minutes 15
    python bench/chaos.py --stack redis-postgres --sagas 2000 --minutes 3

Stacks: embedded (SQLite + the in-memory broker, one process), redis-sqlite,
redis-postgres, kafka-postgres; the servers are started here, on loopback ports
(PostgreSQL with synchronous commits, redis-server with AOF ``appendfsync always``,
Kafka from the suite's Maven Central jars). It runs 3 engine and 3 worker processes
(``orchestrator run --role engine|worker``; one ``--role both`` on the embedded
stack), requests the sagas evenly over the run, and every few seconds SIGKILLs one of
them or one of the servers (a killed server comes back 1 to 4 s later; some killed
processes stay dead, one of each role always lives). Then it waits for every saga to
end, checks every invariant (each saga ended as its input says, no outcome and no
compensation recorded twice, every chain verifies, the broker is empty) and prints:
sagas run, kills of each kind, the time from each kind of kill to the first saga
finished after it (p50/p95), sagas adopted by surviving engines, and anything lost.
The suite runs a short version of each stack (tests/runtime/test_chaos.py).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.runtime.chaos_run import run_chaos
from tests.runtime.stacks import STACKS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", choices=STACKS, default="kafka-postgres")
    parser.add_argument("--sagas", type=int, default=2000, help="sagas requested in all")
    parser.add_argument("--minutes", type=float, default=3.0, help="how long chaos lasts")
    parser.add_argument("--engines", type=int, default=3)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-servers", action="store_true", help="kill engines and workers only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sagaflow-chaos-") as tmp:
        report = asyncio.run(
            run_chaos(
                args.stack,
                Path(tmp),
                sagas=args.sagas,
                seconds=args.minutes * 60,
                engines=args.engines,
                workers=args.workers,
                servers=not args.no_servers,
                seed=args.seed,
                finish_within=max(240.0, args.minutes * 30),
            )
        )
    print("\n".join(report.lines()))


if __name__ == "__main__":
    main()
