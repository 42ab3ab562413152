"""One output convention for every command: JSON with ``--json``, a human rendering without.

Scripts read the JSON (one object or list per command, on one line); people read tables.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rich.table import Table

from wahub.cli.common import console


def emit(value: Any, as_json: bool, human: Callable[[Any], None] | None = None) -> None:
    """Print ``value`` as one line of JSON, or for people: ``human(value)`` when given,
    else a table (a list of rows, or one row as field/value pairs) or the text itself."""
    if as_json:
        print(json.dumps(value, default=str))
    elif human is not None:
        human(value)
    else:
        console.print(render(value))


def render(value: Any) -> Any:
    """A rich renderable for a command's result."""
    if isinstance(value, Mapping):
        table = Table("field", "value", show_header=False)
        for key, item in value.items():
            table.add_row(str(key), _cell(item))
        return table
    if isinstance(value, Sequence) and not isinstance(value, str):
        rows = [row for row in value if isinstance(row, Mapping)]
        if not rows:
            return "(none)" if not value else "\n".join(_cell(v) for v in value)
        columns = list(dict.fromkeys(key for row in rows for key in row))
        table = Table(*columns)
        for row in rows:
            table.add_row(*(_cell(row.get(column)) for column in columns))
        return table
    return _cell(value)


def _cell(item: Any) -> str:
    if item is None:
        return ""
    if isinstance(item, Mapping | list):
        return json.dumps(item, default=str)
    if isinstance(item, float):
        return f"{item:.4g}"
    return str(item)
