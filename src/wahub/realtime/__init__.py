"""Pushing status changes to connected clients (WebSocket and SSE)."""
