"""Full-text search over messages on every store backend: words in the text, the template
name and the chat name (kept current by the migration's triggers), chat and time
filters, what agents may see, ranking, and input that must never become a query error."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import update

from wahub.domain.actors import Actor
from wahub.domain.errors import ValidationError
from wahub.features.search import MessageSearch, SearchQuery, query_terms
from wahub.store import chat_names as names_q
from wahub.store.schema import messages

GROUP_A = "120363000000000101@g.us"
GROUP_B = "120363000000000102@g.us"

pytestmark = pytest.mark.usefixtures("env")


async def store(env: Any, chat_id: str, text: str | None, **extra: Any) -> dict[str, Any]:
    """An inbound message with ``text`` (or whatever ``extra`` overrides)."""
    return dict(
        await env.insert_queued(
            chat_id,
            direction="in",
            status="received",
            text=text,
            ordering_key=f"in:{chat_id}:{time.monotonic_ns()}",
            **extra,
        )
    )


async def find(env: Any, q: str, actor: Actor | None = None, **filters: Any) -> list[str]:
    search = MessageSearch(env.db, env.access)
    hits = await search.search(actor or env.admin, SearchQuery(q=q, **filters))
    return [str(h.message["id"]) for h in hits]


async def rename(env: Any, chat_id: str, name: str, source: str = "api") -> None:
    async with env.db.transaction() as conn:
        await names_q.learn_chat_name(
            conn, chat_id=chat_id, name=name, source=source, now=time.time()
        )


async def test_finds_words_in_text_both_directions(env: Any) -> None:
    inbound = await store(env, env.person_chat(1), "Can you send the invoice for March?")
    outbound = await env.insert_queued(env.person_chat(2), text="Invoice attached, thanks")
    await store(env, env.person_chat(3), "hello there")

    assert sorted(await find(env, "invoice")) == sorted([inbound["id"], outbound["id"]])
    assert await find(env, "march invoice") == [inbound["id"]], "every word must match"
    assert await find(env, "INVO") != [], "case-insensitive word prefixes"
    assert await find(env, "nothing-like-this") == []


async def test_finds_template_names(env: Any) -> None:
    sent = await env.insert_queued(
        env.person_chat(4), type="template", template_name="order_shipped"
    )

    assert await find(env, "shipped") == [sent["id"]]


async def test_finds_messages_by_their_chat_name_and_follows_renames(env: Any) -> None:
    await rename(env, GROUP_A, "Marketing Team")
    message = await store(env, GROUP_A, "see you tomorrow")

    assert await find(env, "marketing") == [message["id"]]

    await rename(env, GROUP_A, "Growth Squad")

    assert await find(env, "marketing") == []
    assert await find(env, "squad tomorrow") == [message["id"]]
    hit = (await MessageSearch(env.db, env.access).search(env.admin, SearchQuery(q="squad")))[0]
    assert hit.chat_name == "Growth Squad"


async def test_a_chat_named_after_its_messages_still_enriches_them(env: Any) -> None:
    message = await store(env, GROUP_B, "first words")

    await rename(env, GROUP_B, "Late Name", source="provider")

    assert await find(env, "late") == [message["id"]]


async def test_edited_text_is_searched_as_it_is_now(env: Any) -> None:
    message = await store(env, env.person_chat(5), "original wording")
    async with env.db.transaction() as conn:
        await conn.execute(
            update(messages).where(messages.c.id == message["id"]).values(text="revised wording")
        )

    assert await find(env, "original") == []
    assert await find(env, "revised") == [message["id"]]


async def test_status_updates_do_not_disturb_the_index(env: Any) -> None:
    message = await store(env, env.person_chat(6), "stable text")
    async with env.db.transaction() as conn:
        await conn.execute(
            update(messages).where(messages.c.id == message["id"]).values(status="read")
        )

    assert await find(env, "stable") == [message["id"]]


async def test_filters_by_chat_and_time(env: Any) -> None:
    old = await store(env, env.person_chat(7), "quarterly report", created_at=1_000.0)
    new = await store(env, env.person_chat(8), "quarterly report", created_at=2_000.0)

    assert await find(env, "quarterly", chat_id=env.phone(7)) == [old["id"]], (
        "a phone number is accepted as the chat"
    )
    assert await find(env, "quarterly", since=1_500.0) == [new["id"]]
    assert await find(env, "quarterly", until=1_500.0) == [old["id"]]
    assert await find(env, "quarterly", since=1_000.0, until=2_000.0) == [old["id"]]


async def test_agents_find_only_what_they_may_see(env: Any) -> None:
    await env.channels.register_group(chat_id=GROUP_A, name="Alpha", channel_id=env.channel_id)
    await env.channels.register_group(chat_id=GROUP_B, name="Beta", channel_id=env.channel_id)
    await env.access.add_member(group_name="team", user_name="agent-a")
    await env.access.assign_chat(group_name="team", chat_id=GROUP_A)
    agent = await env.actor("agent-a", "agent")
    visible = await store(env, GROUP_A, "secret plan")
    hidden = await store(env, GROUP_B, "secret plan")
    own = await env.insert_queued(
        env.person_chat(9), text="secret plan", sender_user_id=agent.user_id
    )
    viewer = await env.actor("viewer-a", "viewer")

    assert sorted(await find(env, "secret", agent)) == sorted([visible["id"], own["id"]])
    assert len(await find(env, "secret", viewer)) == 3
    assert hidden["id"] in await find(env, "secret")


async def test_better_matches_rank_first_with_a_snippet(env: Any) -> None:
    weak = await store(env, env.person_chat(10), "apple " + "filler words " * 20)
    strong = await store(env, env.person_chat(11), "apple apple apple pie")

    search = MessageSearch(env.db, env.access)
    hits = await search.search(env.admin, SearchQuery(q="apple"))

    assert [h.message["id"] for h in hits] == [strong["id"], weak["id"]]
    assert hits[0].score >= hits[1].score
    assert hits[0].snippet is not None
    assert "[[apple]]" in hits[0].snippet.lower()


async def test_limit(env: Any) -> None:
    for n in range(5):
        await store(env, env.person_chat(20 + n), f"repeat {n}")

    assert len(await find(env, "repeat", limit=3)) == 3


@pytest.mark.parametrize(
    "hostile",
    [
        "AND OR",
        "NOT",
        "NEAR(a b)",
        "'; drop table messages; --",
        'a" OR "b',
        "col:value",
        "^start",
        "x*y",
        "(unbalanced",
        "ünïcödé wörds",
        "日本語",
        "a & b | !c <-> d",
        "\\x00 \\'",
    ],
)
async def test_hostile_input_is_words_never_a_query_error(env: Any, hostile: str) -> None:
    await store(env, env.person_chat(30), "drop the messages table please")

    await find(env, hostile)  # must not raise

    assert await find(env, "messages") != [], "the table is still there"


@pytest.mark.parametrize("empty", ['"', "*", "   ", "---", "_", "\"'*()"])
async def test_input_without_words_is_a_validation_error(empty: str) -> None:
    with pytest.raises(ValidationError, match="no words"):
        query_terms(empty)


def test_terms_are_lowercased_words_without_repeats() -> None:
    assert query_terms("Foo foo BAR_baz, 42!") == ["foo", "bar", "baz", "42"]
