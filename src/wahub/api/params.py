"""Bounds for what a client puts in a path or a query string, shared by every router.

Every id has a length limit and every integer a range the database can hold, so a
2^64 or a megabyte-long id is a 422 naming the parameter, never a driver error (500).
The OpenAPI document shows these bounds, so generated clients know them too.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from wahub.domain.ids import MAX_SQL_INT

# Our ids are a prefix and 26 characters (``msg_01h...``); 64 leaves room for new kinds.
ID_MAX_LENGTH = 64
# Chat ids: a phone number in any usual spelling, a person's JID or a group's JID.
CHAT_ID_MAX_LENGTH = 120
# Names an operator chooses (employee groups, replication sinks).
NAME_MAX_LENGTH = 200

IdPath = Annotated[str, Path(min_length=1, max_length=ID_MAX_LENGTH)]
ChatIdPath = Annotated[str, Path(min_length=1, max_length=CHAT_ID_MAX_LENGTH)]
NamePath = Annotated[str, Path(min_length=1, max_length=NAME_MAX_LENGTH)]
# A channel by its id or its name (names are at most NAME_MAX_LENGTH, ids shorter).
ChannelPath = Annotated[
    str,
    Path(min_length=1, max_length=NAME_MAX_LENGTH, description="The channel's id or its name."),
]
RowIdPath = Annotated[int, Path(ge=1, le=MAX_SQL_INT)]

IdQuery = Annotated[str | None, Query(min_length=1, max_length=ID_MAX_LENGTH)]
OffsetQuery = Annotated[int, Query(ge=0, le=MAX_SQL_INT, description="Rows to skip.")]
