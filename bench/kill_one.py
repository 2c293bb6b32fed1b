"""The node-loss scenario by hand, with default settings: three ``orchestrator run``
processes on Kafka + PostgreSQL (two with step workers, one ``--role engine``), 300
``order_fulfilment`` sagas (240 with valid cards, 60 declined), one process SIGKILLed
a few seconds in and left dead. Then it prints the statuses and Kafka's own
``kafka-consumer-groups --describe`` for every group.

Run by hand:  python bench/kill_one.py [--victim 0|1|2] [--sagas 300]

Expected: the 240 valid orders complete, the 60 declined ones are compensated, none
of the valid ones is compensated, and every partition shows LAG 0.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eventstore import EventStore
from orchestrator.runtime.client import read_saga, request_saga
from tests.kafka_server import KafkaServer
from tests.runtime.cluster import WORKFLOWS, wait_all_finished, write_config
from tests.servers import PostgresServer


def _order(n: int) -> dict[str, object]:
    card = "4000000000000002" if n % 5 == 0 else "4242424242424242"  # 1 in 5 declined
    return {"order_id": f"o-{n}", "sku": "widget", "quantity": 1, "card": card,
            "address": "1 Main St"}  # fmt: skip


async def scenario(sagas: int, victim: int, workdir: Path) -> None:
    postgres = PostgresServer(durable_commits=True)
    kafka = KafkaServer()
    postgres.start()
    kafka.start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        store_url = postgres.create_database("scenario")
        prefix = f"s{uuid.uuid4().hex[:6]}."
        messaging = {
            "broker_type": "kafka",
            "kafka": {"bootstrap_servers": [kafka.bootstrap], "topic_prefix": prefix},
        }
        config = write_config(workdir / "sagaflow.yaml", store_url, messaging)
        store = await EventStore.open(store_url)
        for i, role in enumerate(("both", "both", "engine")):
            log = (workdir / f"process-{i}.log").open("ab")
            procs.append(
                subprocess.Popen(  # noqa: ASYNC220 (starting a process does not block)
                    [
                        sys.executable,
                        "-m",
                        "orchestrator.cli",
                        "run",
                        "--config",
                        str(config),
                        "--workflows",
                        str(WORKFLOWS),
                        "--role",
                        role,
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=workdir,
                )
            )
        started = time.time()
        ids = []
        for n in range(sagas):  # over about 9 s
            ids.append(await request_saga(store, "order_fulfilment", _order(n)))
            await asyncio.sleep(9.0 / sagas)
            if victim >= 0 and time.time() - started > 4 and procs[victim].poll() is None:
                procs[victim].send_signal(signal.SIGKILL)
                print(f"SIGKILLed process {victim} at {time.time() - started:.1f} s")
        unfinished = await wait_all_finished(store, sagas, 300)
        took = time.time() - started
        print(f"all {sagas} sagas ended after {took:.0f} s ({unfinished} unfinished)")
        statuses: Counter[tuple[bool, str]] = Counter()
        for n, saga_id in enumerate(ids):
            state, _ = await read_saga(store, saga_id)
            statuses[(n % 5 != 0, state.status.value if state else "missing")] += 1
        for (valid, status), count in sorted(statuses.items()):
            print(f"  {'valid card   ' if valid else 'declined card'} {status:12} {count}")
        await store.close()
        await asyncio.sleep(5)  # let the last commits land, as a user would look later
        command = kafka._java_cmd(
            "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
            "--bootstrap-server", kafka.bootstrap, "--describe", "--all-groups",
        )  # fmt: skip
        describe = await asyncio.to_thread(
            subprocess.run, command, capture_output=True, text=True, check=False, timeout=120
        )
        print(describe.stdout or describe.stderr)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            proc.wait(30)
        kafka.cleanup()
        postgres.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sagas", type=int, default=300)
    parser.add_argument("--victim", type=int, default=0, help="which process (-1: none)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sagaflow-kill-one-") as tmp:
        asyncio.run(scenario(args.sagas, args.victim, Path(tmp)))


if __name__ == "__main__":
    main()
