"""Temporal workflows: one `SubscriptionWorkflow` per subscription."""
