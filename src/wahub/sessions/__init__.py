"""The WhatsApp Web session process (``wahub sessions``): owns linked phones (one lease
each), turns their events into inbox rows and state changes, and sends for their
channels."""
