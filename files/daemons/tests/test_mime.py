from __future__ import annotations

import random
from email.message import EmailMessage

import pytest

from isikhnas_daemons.mime import UnparseableEmail, header_sender, html_to_text, parse, safe_filename


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("latin-1")


def test_plain_text() -> None:
    msg = EmailMessage()
    msg["From"] = "District Vet <Vet@Example.org>"
    msg["Subject"] = "report"
    msg["Message-ID"] = "<abc@example.org>"
    msg.set_content("DIS @-8.65,115.22 AI CHI=20/5\n")
    parsed = parse(msg.as_bytes())
    assert parsed.from_address == "vet@example.org"
    assert parsed.from_name == "District Vet"
    assert parsed.message_id == "<abc@example.org>"
    assert parsed.text.strip() == "DIS @-8.65,115.22 AI CHI=20/5"
    assert parsed.attachments == ()
    assert not parsed.auto_submitted


def test_alternative_prefers_plain_and_keeps_html() -> None:
    msg = EmailMessage()
    msg["From"] = "vet@example.org"
    msg.set_content("plain body")
    msg.add_alternative("<p>html <b>body</b></p>", subtype="html")
    parsed = parse(msg.as_bytes())
    assert parsed.text.strip() == "plain body"
    assert parsed.html is not None
    assert "<b>body</b>" in parsed.html


def test_html_only_is_turned_into_text() -> None:
    raw = crlf(
        "From: vet@example.org\nSubject: x\nMIME-Version: 1.0\nContent-Type: text/html; charset=utf-8\n\n"
        "<html><head><style>p {color: red}</style><script>alert(1)</script></head>"
        "<body><p>Hello&nbsp;team</p><div>DIS @-8.65,115.22 AI CHI=2</div></body></html>\n"
    )
    parsed = parse(raw)
    assert parsed.text.splitlines() == ["Hello team", "DIS @-8.65,115.22 AI CHI=2"]
    assert "alert" not in parsed.text


def test_nested_multipart_with_attachments_and_inline_image() -> None:
    msg = EmailMessage()
    msg["From"] = "vet@example.org"
    msg.set_content("see attached\nDIS BALI-0412 FMD CAT=3/1")
    msg.add_alternative("<p>see attached</p>", subtype="html")
    msg.add_attachment(b"%PDF-1.4 fake", maintype="application", subtype="pdf", filename="lab result (1).pdf")
    msg.add_attachment(b"\x89PNG fake", maintype="image", subtype="png", disposition="inline")
    parsed = parse(msg.as_bytes())
    assert "DIS BALI-0412 FMD CAT=3/1" in parsed.text
    assert [(a.filename, a.content_type, a.data) for a in parsed.attachments] == [
        ("lab_result_1_.pdf", "application/pdf", b"%PDF-1.4 fake"),
        ("attachment-2.png", "image/png", b"\x89PNG fake"),
    ]


def test_unknown_charset_does_not_crash() -> None:
    raw = (
        crlf("From: vet@example.org\nContent-Type: text/plain; charset=x-klingon\nContent-Transfer-Encoding: 8bit\n\n")
        + "DIS @-8.65,115.22 AI CHI=2 caf\u00e9\r\n".encode()
    )
    parsed = parse(raw)
    assert parsed.text.startswith("DIS @-8.65,115.22 AI CHI=2 caf")


def test_windows_1252_body_and_encoded_headers() -> None:
    raw = crlf(
        "From: =?utf-8?q?Dokter_H=C3=A9wan?= <vet@example.org>\n"
        "Subject: =?iso-8859-1?q?Laporan_=E9t=E9?=\n"
        "Content-Type: text/plain; charset=windows-1252\nContent-Transfer-Encoding: 8bit\n\n"
    ) + "\u201cDIS @-8.65,115.22 AI CHI=2\u201d\r\n".encode("cp1252")
    parsed = parse(raw)
    assert parsed.from_name == "Dokter H\u00e9wan"
    assert parsed.subject == "Laporan \u00e9t\u00e9"
    assert parsed.text.strip() == "\u201cDIS @-8.65,115.22 AI CHI=2\u201d"


def test_quoted_printable_soft_breaks() -> None:
    raw = crlf(
        "From: vet@example.org\nContent-Type: text/plain; charset=utf-8\n"
        "Content-Transfer-Encoding: quoted-printable\n\nDIS @-8.65,115.22 AI =\nCHI=3D20/5\n"
    )
    assert parse(raw).text.strip() == "DIS @-8.65,115.22 AI CHI=20/5"


def test_multipart_without_boundary_keeps_the_text() -> None:
    raw = crlf("From: vet@example.org\nContent-Type: multipart/mixed\n\nDIS @-8.65,115.22 AI CHI=2\n")
    parsed = parse(raw)
    assert "DIS @-8.65,115.22 AI CHI=2" in parsed.text
    assert parsed.defects


def test_broken_base64_attachment_is_kept_best_effort() -> None:
    raw = crlf(
        "From: vet@example.org\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=XX\n\n"
        "--XX\nContent-Type: text/plain\n\nDIS @-8.65,115.22 AI CHI=2\n"
        "--XX\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n"
        'Content-Disposition: attachment; filename="d.bin"\n\nAAEC!!!Aw\n--XX--\n'
    )
    parsed = parse(raw)
    assert parsed.attachments[0].filename == "d.bin"


def test_attached_email_is_one_attachment() -> None:
    inner = EmailMessage()
    inner["From"] = "someone@example.net"
    inner.set_content("forwarded text")
    outer = EmailMessage()
    outer["From"] = "vet@example.org"
    outer.set_content("DIS @-8.65,115.22 AI CHI=2")
    outer.add_attachment(inner)
    parsed = parse(outer.as_bytes())
    assert parsed.text.strip() == "DIS @-8.65,115.22 AI CHI=2"
    assert len(parsed.attachments) == 1
    assert parsed.attachments[0].content_type == "message/rfc822"
    assert b"forwarded text" in parsed.attachments[0].data


def test_rfc2231_non_ascii_filename_is_made_safe() -> None:
    raw = crlf(
        "From: vet@example.org\nContent-Type: multipart/mixed; boundary=B\n\n--B\nContent-Type: text/plain\n\nhi\n"
        "--B\nContent-Type: image/jpeg\nContent-Disposition: attachment; filename*=utf-8''foto%20sapi%20%C3%A9.jpg\n"
        "Content-Transfer-Encoding: base64\n\n/9j/\n--B--\n"
    )
    assert parse(raw).attachments[0].filename == "foto_sapi_.jpg"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (
            crlf(
                "From: vet@example.org\nContent-Type: multipart/mixed; boundary=B\n\n--B\n"
                "Content-Type: application/pdf\nContent-Transfer-Encoding: base64\n\nJVBERg==\n--B--\n"
            ),
            "no text part",
        ),
        (crlf("From: vet@example.org\nSubject: empty\n\n   \n"), "text is empty"),
    ],
)
def test_unusable_mail_is_unparseable(raw: bytes, reason: str) -> None:
    with pytest.raises(UnparseableEmail, match=reason):
        parse(raw)


def test_automatic_mail_is_flagged() -> None:
    parsed = parse(crlf("From: vet@example.org\nAuto-Submitted: auto-replied\n\nOut of office\n"))
    assert parsed.auto_submitted
    assert parse(crlf("From: MAILER-DAEMON@example.org\n\nbounce\n")).auto_submitted


def test_garbled_from_header_gives_no_address() -> None:
    parsed = parse(crlf("From: <<<@@@>>> ,,, \nSubject: x\n\nDIS\n"))
    assert parsed.from_address is None


def test_header_sender_reads_headers_only() -> None:
    assert header_sender(crlf("From: A <a@example.org>\n\n")) == ("a@example.org", False)
    assert header_sender(crlf("From: a@example.org\nPrecedence: bulk\n\n")) == ("a@example.org", True)


def test_random_bytes_never_raise_anything_but_unparseable() -> None:
    rng = random.Random(7)
    for _ in range(200):
        blob = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400)))
        try:
            parse(b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n" + blob)
            parse(blob)
        except UnparseableEmail:
            pass


def test_html_to_text_and_safe_filename() -> None:
    assert html_to_text("<p>a</p><br>b &amp; c") == "a\nb & c"
    assert safe_filename("../../etc/passwd", 1, "text/plain") == "etc_passwd"
    assert safe_filename(None, 3, "application/x-unknown-thing") == "attachment-3.bin"
