"""Which received messages name a file to download, and where it is."""

from __future__ import annotations

from wahub.features.inbound_media import DownloadRef, download_ref


def test_a_cloud_api_media_id_is_fetched_through_the_provider() -> None:
    content = {"type": "image", "image": {"id": "1234", "mime_type": "image/jpeg"}}
    assert download_ref("cloudapi", content) == DownloadRef("cloudapi", "1234", "image/jpeg", None)


def test_whapi_and_periskope_links_are_fetched_as_they_are() -> None:
    whapi = {
        "type": "document",
        "document": {"id": "x", "link": "https://s3.example/f.pdf", "file_name": "f.pdf"},
    }
    periskope = {
        "message_type": "image",
        "has_media": True,
        "media": {"path": "https://cdn.example/a.jpg", "mimetype": "image/jpeg"},
    }
    assert download_ref("whapi", whapi) == DownloadRef(
        "link", "https://s3.example/f.pdf", None, "f.pdf"
    )
    assert download_ref("periskope", periskope) == DownloadRef(
        "link", "https://cdn.example/a.jpg", "image/jpeg", None
    )


def test_nothing_to_fetch_queues_nothing() -> None:
    # Text, a WHAPI file without a link, a relative Periskope path, a kind we do not
    # download from: no download that could never finish.
    assert download_ref("cloudapi", {"type": "text", "text": {"body": "hi"}}) is None
    assert download_ref("whapi", {"type": "image", "image": {"id": "x"}}) is None
    relative = {"has_media": True, "media": {"path": "/media/a.jpg"}}
    assert download_ref("periskope", relative) is None
    assert download_ref("web", {"type": "image", "image": {"id": "x"}}) is None
