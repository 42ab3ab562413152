"""Logging: stdlib loggers rendered by structlog (readable on a terminal, JSON in production)."""

from __future__ import annotations

import logging
import sys

import structlog


def configure_logging(level: str = "INFO", *, json: bool = False) -> None:
    # Tracebacks are rendered plain, never with local variables: locals hold request
    # headers, API keys and provider tokens, which must not reach a log.
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback
        )
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *([structlog.processors.format_exc_info] if json else []),
            renderer,
        ],
        foreign_pre_chain=[
            # Fields passed as ``log.info("...", extra={...})`` become the event's keys.
            structlog.stdlib.ExtraAdder(),
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Access logs on every request drown what matters and cost time on the hot path.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # Alembic narrates every start ("Context impl SQLiteImpl..."); we log the one line
    # that matters (schema migrated from X to Y) ourselves.
    logging.getLogger("alembic").setLevel(logging.WARNING)
