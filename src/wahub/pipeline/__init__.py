"""Background work: the outbox (sending), the inbox (webhooks), maintenance."""
