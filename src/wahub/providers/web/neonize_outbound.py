"""Our outbound web messages as neonize protobufs: the recipient JID and the message.

Pure: media arrives here already uploaded (``upload``, neonize's ``UploadResponse``), so
nothing in this module touches the network. We build the protobufs ourselves rather than
use neonize's ``build_image_message`` and friends: those accept a string as media and
fetch it with ``requests`` and no timeout, and they call ffmpeg for thumbnails.
"""

from __future__ import annotations

from typing import Any, Final

from neonize.proto.Neonize_pb2 import JID
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import (
    AudioMessage,
    ContextInfo,
    DocumentMessage,
    ExtendedTextMessage,
    ImageMessage,
    Message,
    VideoMessage,
)
from neonize.utils.enum import MediaType

from wahub.domain.errors import PermanentProviderError

MEDIA_KINDS: Final[dict[str, Any]] = {
    "image": MediaType.MediaImage,
    "video": MediaType.MediaVideo,
    "audio": MediaType.MediaAudio,
    "document": MediaType.MediaDocument,
}

_DEFAULT_MIMETYPE: Final = {
    "image": "image/jpeg",
    "video": "video/mp4",
    "audio": "audio/ogg; codecs=opus",
    "document": "application/octet-stream",
}


def build_jid(address: str) -> Any:
    """neonize's ``JID`` for ``user@server`` or ``user:device@server``. Raises
    ``PermanentProviderError`` for anything else (the JID proto has required fields, so
    a half-built one would fail deep inside neonize instead)."""
    user, at, server = address.strip().rpartition("@")
    if not at or not user or not server:
        raise PermanentProviderError(f"not a WhatsApp address: {address!r}")
    user, _, device = user.partition(":")
    return JID(
        User=user,
        Server=server,
        Device=int(device) if device.isdigit() else 0,
        RawAgent=0,
        Integrator=0,
        IsEmpty=False,
    )


def _context(reply_to: str | None, quoted_sender: str | None) -> Any | None:
    if reply_to is None:
        return None
    context = ContextInfo(stanzaID=reply_to)
    if quoted_sender is not None:
        context.participant = quoted_sender
    return context


def text_message(text: str, reply_to: str | None = None, quoted_sender: str | None = None) -> Any:
    """A text message; a reply quotes message ``reply_to`` (written by
    ``quoted_sender``, a JID, when known)."""
    context = _context(reply_to, quoted_sender)
    if context is None:
        return Message(conversation=text)
    return Message(extendedTextMessage=ExtendedTextMessage(text=text, contextInfo=context))


def media_message(
    kind: str,
    upload: Any,
    *,
    mimetype: str | None,
    caption: str | None = None,
    filename: str | None = None,
    reply_to: str | None = None,
    quoted_sender: str | None = None,
) -> Any:
    """A media message pointing at media already uploaded (``upload``). Raises
    ``PermanentProviderError`` for a kind WhatsApp has no message for."""
    common: dict[str, Any] = {
        "URL": upload.url,
        "directPath": upload.DirectPath,
        "mediaKey": upload.MediaKey,
        "fileEncSHA256": upload.FileEncSHA256,
        "fileSHA256": upload.FileSHA256,
        "fileLength": upload.FileLength,
        "mimetype": mimetype or _DEFAULT_MIMETYPE.get(kind, "application/octet-stream"),
    }
    context = _context(reply_to, quoted_sender)
    if context is not None:
        common["contextInfo"] = context
    if kind == "image":
        return Message(imageMessage=ImageMessage(caption=caption or "", **common))
    if kind == "video":
        return Message(videoMessage=VideoMessage(caption=caption or "", **common))
    if kind == "audio":
        return Message(audioMessage=AudioMessage(**common))
    if kind == "document":
        name = filename or "document"
        return Message(
            documentMessage=DocumentMessage(
                fileName=name, title=name, caption=caption or "", **common
            )
        )
    raise PermanentProviderError(f"cannot send a {kind!r} message through a web session")
