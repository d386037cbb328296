"""Embedded services for `recur dev` and the test suite: PostgreSQL, Temporal, localstripe, SMTP."""
