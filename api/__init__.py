"""The HTTP API: a thin layer that starts, updates and signals workflows and reads PostgreSQL."""
