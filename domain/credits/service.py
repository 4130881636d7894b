"""Credit ledger and certificate use cases."""
