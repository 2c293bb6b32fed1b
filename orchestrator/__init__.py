"""Durable sagas as networkx DAGs over an event-sourced, hash-chained log."""

__all__: list[str] = []
