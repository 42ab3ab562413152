"""What a client may ask us to send: validated up front, stored in Cloud API shape."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from wahub.domain.content import CAPTION_LIMIT, TEXT_LIMIT, SendRequest

TO = "+4915123456789"
LINK = "https://cdn.example.com/files/report.pdf"


def request(**fields: Any) -> SendRequest:
    return SendRequest.model_validate({"to": TO, **fields})


def refusal(**fields: Any) -> str:
    """The validation message for a request that must be refused."""
    with pytest.raises(pydantic.ValidationError) as caught:
        request(**fields)
    return str(caught.value)


TEMPLATE: dict[str, Any] = {
    "name": "order_update",
    "language": {"code": "en_US"},
    "components": [
        {"type": "body", "parameters": [{"type": "text", "text": "Anna"}]},
    ],
}


# --- accepted shapes ---------------------------------------------------------------------


def test_text_is_the_default_type_and_content_is_cloud_api_shaped() -> None:
    sent = request(text={"body": "hello"})

    assert sent.type == "text"
    assert sent.content() == {"type": "text", "text": {"body": "hello", "preview_url": False}}


def test_a_template_without_type_is_a_template() -> None:
    sent = request(template=TEMPLATE)

    assert sent.type == "template"
    assert sent.content()["type"] == "template"
    assert sent.canonical() == request(type="template", template=TEMPLATE).canonical()


@pytest.mark.parametrize("media", ["image", "document", "audio", "video"])
def test_a_media_object_without_type_gives_its_type(media: str) -> None:
    assert request(**{media: {"link": LINK}}).type == media


def test_a_null_object_beside_the_one_given_does_not_count() -> None:
    assert request(text=None, template=TEMPLATE).type == "template"


def test_text_preview_url_is_kept() -> None:
    content = request(text={"body": "see https://x.org", "preview_url": True}).content()

    assert content["text"]["preview_url"] is True


def test_text_of_exactly_the_limit_is_accepted() -> None:
    assert len(request(text={"body": "x" * TEXT_LIMIT}).content()["text"]["body"]) == 4096


def test_template_content_is_cloud_api_shaped_without_nulls() -> None:
    content = request(type="template", template=TEMPLATE).content()

    assert content == {
        "type": "template",
        "template": {
            "name": "order_update",
            "language": {"code": "en_US"},
            "components": [{"type": "body", "parameters": [{"type": "text", "text": "Anna"}]}],
        },
    }


@pytest.mark.parametrize("media", ["image", "document", "audio", "video"])
def test_each_media_type_is_accepted_with_an_https_link(media: str) -> None:
    content = request(type=media, **{media: {"link": LINK}}).content()

    assert content == {"type": media, media: {"link": LINK}}


def test_document_caption_and_filename_are_kept() -> None:
    document = {"link": LINK, "caption": "Q3", "filename": "report.pdf"}

    content = request(type="document", document=document).content()

    assert content["document"] == document


@pytest.mark.parametrize("code", ["en", "en_US", "pt_BR", "fil"])
def test_language_codes_like_en_or_en_us_are_accepted(code: str) -> None:
    template = {**TEMPLATE, "language": {"code": code}}

    assert request(type="template", template=template).content()["template"]["language"] == {
        "code": code
    }


@pytest.mark.parametrize("given", ["BODY", "Body", "body"])
def test_component_type_is_case_insensitive_and_stored_lower_case(given: str) -> None:
    template = {**TEMPLATE, "components": [{"type": given, "parameters": []}]}

    content = request(type="template", template=template).content()

    assert content["template"]["components"][0]["type"] == "body"


def test_upper_case_body_parameters_are_counted() -> None:
    parameters = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    template = {
        **TEMPLATE,
        "components": [
            {"type": "HEADER", "parameters": [{"type": "text", "text": "h"}]},
            {"type": "BODY", "parameters": parameters},
        ],
    }

    sent = request(type="template", template=template)

    assert sent.template is not None
    assert sent.template.body_parameter_count() == 2, "header parameters are not body ones"


def test_canonical_form_ignores_defaults_given_explicitly() -> None:
    implicit = request(text={"body": "hi"})
    explicit = request(type="text", text={"body": "hi", "preview_url": False}, priority=0)

    assert implicit.canonical() == explicit.canonical()


# --- refused shapes ----------------------------------------------------------------------


def test_a_type_without_its_object_is_refused() -> None:
    assert "'image' object is missing" in refusal(type="image", text={"body": "hi"})


def test_a_request_with_no_object_is_refused_naming_the_choices() -> None:
    assert "one of text, template, image, document, audio, video is required" in refusal()


def test_two_objects_without_a_type_are_refused() -> None:
    message = refusal(text={"body": "hi"}, image={"link": LINK})

    assert "several content objects given (text, image)" in message


def test_two_objects_with_a_type_are_refused() -> None:
    message = refusal(type="text", text={"body": "hi"}, image={"link": LINK})

    assert "image was given too" in message


@pytest.mark.parametrize("body", ["", "   ", "\n\t"])
def test_blank_text_is_refused(body: str) -> None:
    refusal(text={"body": body})


def test_text_over_the_limit_is_refused() -> None:
    assert "4096" in refusal(text={"body": "x" * (TEXT_LIMIT + 1)})


@pytest.mark.parametrize(
    "link", ["http://cdn.example.com/a.png", "ftp://cdn.example.com/a.png", "not a url", ""]
)
def test_a_media_link_that_is_not_https_is_refused(link: str) -> None:
    refusal(type="image", image={"link": link})


def test_a_caption_over_the_limit_is_refused() -> None:
    refusal(type="image", image={"link": LINK, "caption": "x" * (CAPTION_LIMIT + 1)})


def test_audio_takes_no_caption() -> None:
    assert "no caption" in refusal(type="audio", audio={"link": LINK, "caption": "listen"})


@pytest.mark.parametrize("name", ["Order_Update", "order update", "order-update", "", "x" * 513])
def test_a_bad_template_name_is_refused(name: str) -> None:
    assert "template name" in refusal(type="template", template={**TEMPLATE, "name": name})


@pytest.mark.parametrize("code", ["english", "EN", "en_us", "en-US", "", "e"])
def test_a_bad_language_code_is_refused(code: str) -> None:
    template = {**TEMPLATE, "language": {"code": code}}

    assert "language code" in refusal(type="template", template=template)


def test_an_unknown_component_type_is_refused() -> None:
    template = {**TEMPLATE, "components": [{"type": "sidebar"}]}

    assert "component type" in refusal(type="template", template=template)


def test_an_unknown_parameter_type_is_refused() -> None:
    template = {**TEMPLATE, "components": [{"type": "body", "parameters": [{"type": "emoji"}]}]}

    refusal(type="template", template=template)


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"text": {"body": "hi"}, "recipient": TO}, id="top-level"),
        pytest.param({"text": {"body": "hi", "bold": True}}, id="in-text"),
        pytest.param(
            {"type": "image", "image": {"link": LINK, "mime_type": "image/png"}}, id="in-media"
        ),
        pytest.param(
            {"type": "template", "template": {**TEMPLATE, "namespace": "x"}}, id="in-template"
        ),
    ],
)
def test_unknown_fields_are_refused(fields: dict[str, Any]) -> None:
    assert "Extra inputs are not permitted" in refusal(**fields)


def test_an_unknown_type_is_refused() -> None:
    refusal(type="sticker", text={"body": "hi"})


@pytest.mark.parametrize("to", ["", "x" * 121])
def test_a_recipient_of_bad_length_is_refused(to: str) -> None:
    with pytest.raises(pydantic.ValidationError):
        SendRequest.model_validate({"to": to, "text": {"body": "hi"}})


@pytest.mark.parametrize("priority", [-11, 11])
def test_priority_outside_minus_ten_to_ten_is_refused(priority: int) -> None:
    refusal(text={"body": "hi"}, priority=priority)
