"""WhatsApp Web sessions: a linked phone that wahub holds itself (issue 16).

``session`` is the port every engine implements (the neonize engine for real phones, the
sandbox engine for tests and the demo); ``events`` turns what a session reports into inbox
deliveries, so a session's traffic takes the same durable path as a provider's webhooks.
"""
