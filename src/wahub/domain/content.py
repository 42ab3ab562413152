"""What a client may ask us to send, validated before anything is stored.

Shapes mirror the Cloud API's own (``text.body``, ``template.name``, ``image.link``...),
which CRM developers already know; the stored content is exactly the Cloud API object.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    StrictBool,
    StrictInt,
    field_validator,
    model_validator,
)

TEXT_LIMIT = 4096  # Cloud API maximum for text.body
CAPTION_LIMIT = 1024
# Bounds on what a template may carry: Meta allows a header, a body, a footer and up to
# ten buttons, and far fewer variables than this.
COMPONENTS_LIMIT = 16
PARAMETERS_LIMIT = 100
MessageType = Literal["text", "template", "image", "document", "audio", "video"]
MEDIA_TYPES = ("image", "document", "audio", "video")
CONTENT_TYPES = ("text", "template", *MEDIA_TYPES)  # each a field of SendRequest
_TEMPLATE_NAME = re.compile(r"^[a-z0-9_]{1,512}$")
_LANGUAGE = re.compile(r"^[a-z]{2,3}(_[A-Z]{2})?$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class TextBody(_Strict):
    body: str = Field(min_length=1, max_length=TEXT_LIMIT)
    preview_url: StrictBool = False

    @field_validator("body")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("text must not be blank")
        return value


class TemplateParameter(_Strict):
    type: Literal["text", "currency", "date_time", "image", "document", "video", "payload"]
    text: str | None = Field(default=None, max_length=TEXT_LIMIT)
    payload: str | None = Field(default=None, max_length=TEXT_LIMIT)
    currency: dict[str, Any] | None = None
    date_time: dict[str, Any] | None = None
    image: dict[str, Any] | None = None
    document: dict[str, Any] | None = None
    video: dict[str, Any] | None = None


class TemplateComponent(_Strict):
    type: str = Field(max_length=16)
    sub_type: str | None = Field(default=None, max_length=32)
    # A button's position: Meta's examples say "0", some clients send 0.
    index: Annotated[str, Field(max_length=8)] | Annotated[int, Field(ge=0, le=99)] | None = None
    parameters: list[TemplateParameter] = Field(default_factory=list, max_length=PARAMETERS_LIMIT)

    @field_validator("type")
    @classmethod
    def _known_component(cls, value: str) -> str:
        # Meta's examples say "body", pywa sends "BODY": accept both, store lower case.
        lowered = value.lower()
        if lowered not in ("header", "body", "button", "footer"):
            raise ValueError("component type must be header, body, button or footer")
        return lowered


class TemplateLanguage(_Strict):
    code: str = Field(max_length=8)

    @field_validator("code")
    @classmethod
    def _language_code(cls, value: str) -> str:
        if not _LANGUAGE.match(value):
            raise ValueError("language code must look like en or en_US")
        return value


class TemplateBody(_Strict):
    # At most 512 characters, which _template_name checks with a message of its own.
    name: str = Field(json_schema_extra={"maxLength": 512})
    language: TemplateLanguage
    components: list[TemplateComponent] = Field(default_factory=list, max_length=COMPONENTS_LIMIT)

    @field_validator("name")
    @classmethod
    def _template_name(cls, value: str) -> str:
        if not _TEMPLATE_NAME.match(value):
            raise ValueError("template name must be lower-case letters, digits and _")
        return value

    def body_parameter_count(self) -> int:
        return sum(len(c.parameters) for c in self.components if c.type == "body")


class MediaBody(_Strict):
    """A file by ``link`` (an https URL the provider fetches) or by ``id`` (a file
    uploaded with ``POST /v1/media``): exactly one of the two."""

    link: HttpUrl | None = None
    id: str | None = Field(
        default=None,
        pattern=r"^med_[0-9a-z]{1,60}$",
        description="The id POST /v1/media returned.",
    )
    caption: str | None = Field(default=None, max_length=CAPTION_LIMIT)
    filename: str | None = Field(default=None, max_length=240)

    @field_validator("link")
    @classmethod
    def _https(cls, value: HttpUrl | None) -> HttpUrl | None:
        if value is not None and value.scheme != "https":
            raise ValueError("media link must be an https URL")
        return value

    @model_validator(mode="after")
    def _link_or_id(self) -> MediaBody:
        if (self.link is None) == (self.id is None):
            raise ValueError("give either link or id (an uploaded file), not both or neither")
        return self


class SendRequest(_Strict):
    """``POST /v1/messages``: one message to a phone number or chat id.

    ``type`` may be left out: it is then the one content object present (``text``,
    ``template``, ``image``, ...), as the Cloud API's own examples leave no doubt which.
    """

    to: str = Field(min_length=1, max_length=120, description="Phone number or chat id.")
    type: MessageType = Field(
        default="text",
        description="Optional: defaults to the one content object given "
        "(text, template, image, document, audio or video).",
    )
    channel_id: str | None = Field(
        default=None, max_length=64, description="Omit when there is one channel."
    )
    text: TextBody | None = None
    template: TemplateBody | None = None
    image: MediaBody | None = None
    document: MediaBody | None = None
    audio: MediaBody | None = None
    video: MediaBody | None = None
    reply_to: str | None = Field(
        default=None, max_length=200, description="Our message id or a provider message id."
    )
    priority: StrictInt = Field(default=0, ge=-10, le=10)

    @model_validator(mode="before")
    @classmethod
    def _infer_type(cls, data: Any) -> Any:
        """Fill in ``type`` from the one content object given; with none or several, the
        after-validator explains what is missing."""
        if isinstance(data, dict) and "type" not in data:
            present = [name for name in CONTENT_TYPES if data.get(name) is not None]
            if len(present) == 1:
                return {**data, "type": present[0]}
        return data

    @model_validator(mode="after")
    def _one_body_matching_type(self) -> SendRequest:
        present = [name for name in CONTENT_TYPES if getattr(self, name) is not None]
        if "type" not in self.model_fields_set:
            # Only reached when _infer_type could not tell: no object, or several.
            if not present:
                raise ValueError(f"one of {', '.join(CONTENT_TYPES)} is required")
            raise ValueError(
                f"several content objects given ({', '.join(present)}): send one per message"
            )
        if self.type not in present:
            raise ValueError(f"type is {self.type!r} but the {self.type!r} object is missing")
        others = [name for name in present if name != self.type]
        if others:
            raise ValueError(f"type is {self.type!r} but {', '.join(others)} was given too")
        if self.type in ("audio",) and self.audio is not None and self.audio.caption:
            raise ValueError("audio messages take no caption")
        return self

    def content(self) -> dict[str, Any]:
        """The Cloud API-shaped content we store and hand to the adapter."""
        body = getattr(self, self.type)
        assert body is not None
        return {"type": self.type, self.type: body.model_dump(mode="json", exclude_none=True)}

    def canonical(self) -> dict[str, Any]:
        """The request as a comparable value (idempotency: same key, same body?)."""
        return self.model_dump(mode="json", exclude_none=True)
