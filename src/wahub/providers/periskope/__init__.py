"""Periskope: ``adapter`` is its chat directory (names of people and groups), ``webhooks``
verifies and parses deliveries."""
