"""Refunds and cancellations of recorded sales."""
