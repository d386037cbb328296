"""Queries, one module per resource. Callers own the transaction: nothing here commits."""
