"""WHAPI (gate.whapi.cloud): ``adapter`` sends and lists groups, ``webhooks`` verifies and
parses deliveries."""
