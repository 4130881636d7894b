"""Recycled content: the credit ledger (ISO 22095 mass balance) and signed certificates."""
