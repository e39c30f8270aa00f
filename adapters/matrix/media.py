"""Files sent to the bot in Matrix: ``m.image`` and ``m.file`` messages, plain or encrypted.

A plain file is an ``mxc://`` URL in ``content.url``. In an encrypted room the file itself is
encrypted (AES-CTR) and ``content.file`` carries its URL, key, IV and SHA-256: the bot downloads
the ciphertext through the authenticated media API and decrypts it with matrix-nio's
``decrypt_attachment``. Files over ``[matrix] max_attachment_bytes`` are left out, with a note.
"""

from __future__ import annotations

import logging
import mimetypes
from dataclasses import dataclass
from typing import Any

import aiohttp
import nio
from nio.crypto.attachments import decrypt_attachment

from bot.turn import Attachment

__all__ = ["Media", "fetch_media", "parse_media"]

log = logging.getLogger(__name__)

MEDIA_TYPES = frozenset({"m.image", "m.file"})


@dataclass(frozen=True, slots=True)
class Media:
    """Where a file is and what it claims to be.

    Attributes:
        url: Its ``mxc://`` URL (of the ciphertext when encrypted).
        filename: Its name.
        mimetype: Its declared type (``info.mimetype``), or guessed from the name.
        size: Its declared size in bytes, if given.
        key: For an encrypted file: ``(k, iv, sha256)`` from ``content.file``.
    """

    url: str
    filename: str
    mimetype: str
    size: int | None
    key: tuple[str, str, str] | None = None


def parse_media(content: dict[str, Any]) -> tuple[Media, str] | None:
    """The file of an ``m.image``/``m.file`` message and its caption ("" when none)."""
    if content.get("msgtype") not in MEDIA_TYPES:
        return None
    body = content.get("body")
    filename = content.get("filename")
    name = filename if isinstance(filename, str) and filename else body
    if not isinstance(name, str):
        return None
    # With a separate filename, the body is a caption (Matrix 1.10).
    caption = body if isinstance(filename, str) and filename and body != filename else ""
    info = content.get("info")
    info = info if isinstance(info, dict) else {}
    size = info.get("size")
    mimetype = info.get("mimetype")
    if not isinstance(mimetype, str) or not mimetype:
        mimetype = mimetypes.guess_type(name)[0] or "application/octet-stream"
    key = None
    file = content.get("file")
    if isinstance(file, dict):
        url = file.get("url")
        jwk = file.get("key")
        hashes = file.get("hashes")
        iv = file.get("iv")
        k = jwk.get("k") if isinstance(jwk, dict) else None
        sha = hashes.get("sha256") if isinstance(hashes, dict) else None
        if not all(isinstance(v, str) for v in (url, k, iv, sha)):
            return None
        key = (str(k), str(iv), str(sha))
    else:
        url = content.get("url")
    if not isinstance(url, str) or not url.startswith("mxc://"):
        return None
    media = Media(
        url=url,
        filename=name,
        mimetype=mimetype.split(";")[0].strip(),
        size=size if isinstance(size, int) else None,
        key=key,
    )
    return media, caption if isinstance(caption, str) else ""


async def fetch_media(
    client: nio.AsyncClient, media: Media, cap: int
) -> tuple[Attachment | None, str | None]:
    """Download (and decrypt) a file; ``(attachment, None)``, or ``(None, note)`` when left out."""
    name = media.filename
    if media.size is not None and media.size > cap:
        return (
            None,
            f"`{name}` is {media.size:,} bytes, over the {cap:,}-byte limit; it was left out.",
        )
    try:
        response = await client.download(mxc=media.url)
    except (aiohttp.ClientError, TimeoutError) as err:
        log.warning("attachment download failed: %r", err)
        return None, f"`{name}` could not be downloaded; it was left out."
    if not isinstance(response, nio.DownloadResponse):
        log.warning("attachment download refused: %s", response)
        return None, f"`{name}` could not be downloaded; it was left out."
    data: bytes = response.body
    if media.key is not None:
        k, iv, sha256 = media.key
        try:
            data = decrypt_attachment(data, k, sha256, iv)
        except nio.EncryptionError as err:
            log.warning("attachment could not be decrypted: %s", err)
            return (
                None,
                f"`{name}` could not be decrypted (its key or hash is wrong); it was left out.",
            )
    if len(data) > cap:
        return (
            None,
            f"`{name}` is {len(data):,} bytes, over the {cap:,}-byte limit; it was left out.",
        )
    return Attachment(name, media.mimetype, data), None
