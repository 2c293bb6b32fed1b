"""The Apache Kafka broker (needs aiokafka: ``pip install 'sagaflow[kafka]'``).

``brokers.KafkaBroker`` imports this package on first use, so ``import brokers`` works
without aiokafka. Modules:

* :mod:`brokers.kafka.broker` — :class:`KafkaBroker`, the broker primitives on Kafka;
* :mod:`brokers.kafka.clients` — aiokafka plumbing: names, keys, the publish sequence,
  stopping clients, reading a compacted topic;
* :mod:`brokers.kafka.member` — one consume loop's membership of a consumer group;
* :mod:`brokers.kafka.offsets` — contiguous-commit tracking for one partition.
"""

from brokers.kafka.broker import KafkaBroker

__all__ = ["KafkaBroker"]
