"""``wahub settings``: every setting, its default, and the value in force."""

from __future__ import annotations

from typing import Annotated

import typer

from wahub.cli.common import JsonOpt, console, settings_for
from wahub.cli.output import emit, render


def settings(
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Print docs/settings.md (no values) instead.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """List every WAHUB_* setting with its type, default, description and current value
    (secrets show only whether they are set)."""
    from wahub import settings_reference

    if markdown:
        print(settings_reference.markdown(), end="")
        return
    rows = settings_reference.rows(settings_for())
    emit(rows, as_json, lambda value: console.print(render(value)))
