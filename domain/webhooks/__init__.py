"""Webhooks: enterprises' own systems subscribe to the events that touch them (issue 7)."""
