"""The Apache Kafka broker (needs aiokafka: ``pip install 'sagaflow[kafka]'``).

``brokers.KafkaBroker`` imports this package on first use, so ``import brokers`` works
without aiokafka. Modules:

* :mod:`brokers.kafka.broker` — :class:`KafkaBroker`, the broker primitives on Kafka;
* :mod:`brokers.kafka.clients` — the aiokafka clients: their settings, the I/O boundary
  (circuit breaker, error mapping), stopping them, reading a compacted topic;
* :mod:`brokers.kafka.topics` — topic names and their creation;
* :mod:`brokers.kafka.records` — the record a message becomes: key, partition, headers;
* :mod:`brokers.kafka.member` — one consume loop's membership of a consumer group: its
  acknowledgements, commits and rebalances;
* :mod:`brokers.kafka.buffer` — the records a loop fetched and handed out (publish
  order, due retries, handing out again after the visibility timeout);
* :mod:`brokers.kafka.assignor` — how a group's partitions are shared among its loops;
* :mod:`brokers.kafka.membership` — ``consume(on_assigned=...)``: a loop reporting the
  partitions Kafka assigned it;
* :mod:`brokers.kafka.offsets` — contiguous-commit tracking for one partition;
* :mod:`brokers.kafka.late_acks` — acknowledgements after their consume loop ended.
"""

from brokers.kafka.broker import KafkaBroker

__all__ = ["KafkaBroker"]
