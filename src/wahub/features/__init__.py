"""Features: the use cases the API and CLI call (access control, messaging, ...)."""
