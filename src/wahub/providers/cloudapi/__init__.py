"""Meta's WhatsApp Cloud API: ``adapter`` sends, ``errors`` classifies refusals,
``webhooks`` verifies and parses deliveries."""
