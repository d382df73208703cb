"""Business rules and transactions: the only layer that decides."""
