"""Lenient MIME parsing of inbound email: text (plain, else HTML turned to text) and attachments.

Python's parser almost never raises; broken input shows up as *defects*. This module turns "nothing
usable inside" into ``UnparseableEmail`` with a reason the sender can understand, and never lets an
exception from a malformed header or an unknown charset escape.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from email import policy
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import getaddresses
from html.parser import HTMLParser
from mimetypes import guess_extension

# Keeps a processing job well under SQS's 256 KiB message limit even with 4-byte UTF-8 characters.
MAX_TEXT_CHARS = 32 * 1024
_ADDRESS = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")
_AUTO_SENDERS = ("mailer-daemon", "postmaster", "no-reply", "noreply", "do-not-reply")


class UnparseableEmail(ValueError):
    """No usable content; the message says why in words fit for a rejection reply."""


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class ParsedEmail:
    message_id: str | None
    from_address: str | None
    from_name: str | None
    reply_to: str | None
    subject: str
    text: str
    html: str | None
    attachments: tuple[Attachment, ...]
    auto_submitted: bool
    defects: tuple[str, ...]


class _TextExtractor(HTMLParser):
    _BLOCK = frozenset({"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table", "blockquote"})
    _SKIP = frozenset({"script", "style", "head", "title"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skipping = max(0, self._skipping - 1)
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    extractor = _TextExtractor()
    extractor.feed(html)
    extractor.close()
    lines = (re.sub(r"[ \t\xa0]+", " ", line).strip() for line in "".join(extractor.parts).splitlines())
    return "\n".join(line for line in lines if line)


def _header(msg: Message, name: str) -> str | None:
    """A header as text; never raises, whatever the header contains."""
    try:
        value = msg.get(name)
    except Exception:  # noqa: BLE001 - the header classes can fail on garbage; fall back to raw below
        value = _raw_header(msg, name)
    return None if value is None else str(value).strip()


def _raw_header(msg: Message, name: str) -> str | None:
    for key, raw in msg.raw_items():
        if key.lower() == name.lower():
            try:
                return str(make_header(decode_header(str(raw))))
            except Exception:  # noqa: BLE001 - undecodable encoded-words: keep them as they are
                return str(raw)
    return None


def address_of(value: str | None) -> str | None:
    """The first plausible address in a header value, lower-cased."""
    return named_address(value)[0]


def named_address(value: str | None) -> tuple[str | None, str | None]:
    if not value:
        return None, None
    try:
        pairs = getaddresses([value])
    except Exception:  # noqa: BLE001 - malformed input must not escape
        return None, None
    for name, address in pairs:
        if _ADDRESS.match(address):
            return address.lower(), (name or None)
    return None, None


def _text_of(part: Message) -> str:
    """Decoded text of a leaf part; unknown or lying charsets fall back to UTF-8 with replacement."""
    if isinstance(part, EmailMessage):
        try:
            content = part.get_content()
            if isinstance(content, str):
                return content
        except (LookupError, ValueError, KeyError, AssertionError):
            pass
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        charset = part.get_content_charset() or "utf-8"
        try:
            return payload.decode(charset, errors="replace")
        except LookupError:
            return payload.decode("utf-8", errors="replace")
    raw = part.get_payload()
    return raw if isinstance(raw, str) else ""


def _leaves(part: Message) -> Iterator[Message]:
    if part.get_content_maintype() == "multipart" and part.is_multipart():
        payload = part.get_payload()
        if isinstance(payload, list):
            for sub in payload:
                if isinstance(sub, Message):
                    yield from _leaves(sub)
        return
    yield part


def _is_attachment(part: Message) -> bool:
    disposition = (part.get_content_disposition() or "").lower()
    try:
        filename = part.get_filename()
    except Exception:  # noqa: BLE001 - malformed input must not escape
        filename = None
    return disposition == "attachment" or bool(filename) or part.get_content_maintype() not in ("text", "multipart")


def safe_filename(name: str | None, index: int, content_type: str) -> str:
    cleaned = _UNSAFE_FILENAME.sub("_", name or "").strip("._")[:100]
    if cleaned:
        return cleaned
    return f"attachment-{index}{guess_extension(content_type) or '.bin'}"


def _attachment(part: Message, index: int) -> Attachment:
    content_type = part.get_content_type()
    data: bytes
    if part.get_content_maintype() == "message":
        inner = part.get_payload()
        first = inner[0] if isinstance(inner, list) and inner else None
        data = first.as_bytes() if isinstance(first, Message) else str(inner).encode()
    else:
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
    try:
        filename = part.get_filename()
    except Exception:  # noqa: BLE001 - malformed input must not escape
        filename = None
    return Attachment(filename=safe_filename(filename, index, content_type), content_type=content_type, data=data)


def _auto_submitted(msg: Message, from_address: str | None) -> bool:
    auto = (_header(msg, "Auto-Submitted") or "no").lower()
    precedence = (_header(msg, "Precedence") or "").lower()
    local = (from_address or "").split("@", 1)[0]
    return auto != "no" or precedence in ("bulk", "junk", "list") or local.startswith(_AUTO_SENDERS)


def parse(raw: bytes, *, max_text_chars: int = MAX_TEXT_CHARS) -> ParsedEmail:
    """Parse a raw RFC 5322 message; ``UnparseableEmail`` when it holds no readable text."""
    try:
        msg = BytesParser(policy=policy.default).parsebytes(raw)
    except Exception as exc:
        raise UnparseableEmail(f"the message could not be read as email ({type(exc).__name__})") from exc

    defects = [type(d).__name__ for d in msg.defects]
    plain: list[str] = []
    html: list[str] = []
    attachments: list[Attachment] = []
    for part in _leaves(msg):
        defects += [type(d).__name__ for d in part.defects if part is not msg]
        if _is_attachment(part):
            attachments.append(_attachment(part, len(attachments) + 1))
        elif part.get_content_subtype() == "html":
            html.append(_text_of(part))
        elif part.get_content_maintype() in ("text", "multipart"):
            # multipart without a boundary arrives here as one text blob: better than nothing
            plain.append(_text_of(part))

    html_text = "\n".join(html) if html else None
    text = "\n".join(p for p in plain if p.strip())
    if not text.strip() and html_text is not None:
        text = html_to_text(html_text)
    if not plain and html_text is None:
        raise UnparseableEmail("the message has no text part (only attachments or an unknown format)")
    if not text.strip():
        raise UnparseableEmail("the message text is empty")

    from_address, from_name = named_address(_header(msg, "From"))
    reply_to = address_of(_header(msg, "Reply-To"))
    return ParsedEmail(
        message_id=_header(msg, "Message-ID"),
        from_address=from_address,
        from_name=from_name,
        reply_to=reply_to,
        subject=(_header(msg, "Subject") or "")[:998],
        text=text.replace("\r\n", "\n")[:max_text_chars],
        html=html_text[:max_text_chars] if html_text is not None else None,
        attachments=tuple(attachments),
        auto_submitted=_auto_submitted(msg, from_address),
        defects=tuple(defects),
    )


def header_sender(raw: bytes) -> tuple[str | None, bool]:
    """(From address, automatic?) from the headers alone, for mail whose body is unusable."""
    try:
        msg = BytesParser(policy=policy.default).parsebytes(raw, headersonly=True)
    except Exception:  # noqa: BLE001 - malformed input must not escape
        return None, False
    address = address_of(_header(msg, "From"))
    return address, _auto_submitted(msg, address)
