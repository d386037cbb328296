"""Temporal activities: every side effect of a subscription, each idempotent."""
