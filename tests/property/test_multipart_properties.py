"""The shortcut for small multipart bodies (web/forms.py) reads every body exactly as werkzeug's
own parser does: the same fields in the same order, the same files with the same headers and
bytes, the same refusals. Bodies as browsers write them, and the same bodies spoilt."""
from __future__ import annotations

import io

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from werkzeug.exceptions import HTTPException
from werkzeug.formparser import FormDataParser

from tests.support.strategies import property_settings
from web.forms import SMALL_FORM, FormParser, split_multipart

# Flask's limits; files in memory (werkzeug's own parser leaves a spooled file of a body it then
# refuses for the garbage collector to close)
LIMITS = {"max_form_parts": 1000, "max_form_memory_size": 500_000,
          "stream_factory": lambda **_: io.BytesIO()}
names = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)
values = st.text(st.characters(exclude_categories=("Cs",)), max_size=60)
boundaries = st.one_of(
    st.text("0123456789abcdef", min_size=16, max_size=40),
    st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", min_size=16,
            max_size=16).map(lambda tail: "----WebKitFormBoundary" + tail),
    st.text("0123456789", min_size=1, max_size=30).map(lambda tail: "-" * 27 + tail),
    st.text("'()+_,-./:=? 0123456789abcXYZ", min_size=1, max_size=70))


def browser_name(value: str) -> str:
    """What HTML's form-data encoding does to a name or file name."""
    return value.replace("\r\n", "%0D%0A").replace("\r", "%0D").replace("\n", "%0A") \
        .replace('"', "%22")


@st.composite
def parts(draw):
    name = browser_name(draw(names))
    if draw(st.booleans()):
        return name, None, None, draw(values).encode()
    filename = browser_name(draw(st.one_of(names, st.just(""), st.just("C:\\fakepath\\a.pdf"))))
    content_type = draw(st.sampled_from(["application/octet-stream", "application/pdf",
                                         "image/png", "text/plain; charset=utf-8"]))
    return name, filename, content_type, draw(st.binary(max_size=300))


def encode(boundary: str, fields: list, *, preamble: bytes = b"") -> bytes:
    """A body as a browser writes it."""
    out = [preamble]
    for name, filename, content_type, data in fields:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out.append(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n".encode())
        if content_type:
            out.append(f"Content-Type: {content_type}\r\n".encode())
        out.append(b"\r\n" + data + b"\r\n")
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out)


@st.composite
def spoilt(draw, body: bytes) -> bytes:
    """``body`` with a few bytes cut, doubled or replaced by the ones multipart cares about."""
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(body)))
        length = draw(st.integers(0, 8))
        insert = draw(st.sampled_from([b"", b"\r", b"\n", b"\r\n", b"--", b" ", b"\t", b":",
                                       b'"', b";", b"\\", b"\xff", body[at:at + length]]))
        body = body[:at] + insert + body[at + draw(st.sampled_from([0, 0, 1, length])):]
    return body


def parse(parser_class, body: bytes, boundary: str, **limits):
    """What a parser makes of ``body``: fields and files as plain values, or its refusal."""
    parser = parser_class(**{**LIMITS, **limits})
    try:
        _, form, files = parser.parse(io.BytesIO(body), "multipart/form-data", len(body),
                                      {"boundary": boundary})
    except HTTPException as refused:
        return "refused", refused.code
    read = []
    for name, file in files.items(multi=True):
        with file.stream:
            read.append((name, file.filename, file.name, file.content_type,
                         list(file.headers.items()), file.read()))
    return list(form.items(multi=True)), read


def same_as_werkzeug(body: bytes, boundary: str, **limits):
    ours = parse(FormParser, body, boundary, **limits)
    assert ours == parse(FormDataParser, body, boundary, **limits)
    return ours


@property_settings(300)
@given(boundaries, st.lists(parts(), max_size=8))
@example("x" * 20, [("a", None, None, b"1"), ("a", None, None, b"2"), ("b", "", None, b"")])
def test_a_body_as_browsers_write_it_reads_as_werkzeug_reads_it(boundary, fields):
    body = encode(boundary, fields)
    form, files = same_as_werkzeug(body, boundary)
    assert len(form) + len(files) == len(fields)
    if fields and len(body) <= SMALL_FORM:  # and the shortcut itself read it
        assert split_multipart(body, boundary.encode()) is not None


@property_settings(400)
@given(st.data(), boundaries, st.lists(parts(), min_size=1, max_size=5),
       st.sampled_from([b"", b"\r\n", b"preamble\r\n"]))
def test_a_spoilt_body_reads_as_werkzeug_reads_it(data, boundary, fields, preamble):
    body = data.draw(spoilt(encode(boundary, fields, preamble=preamble)))
    same_as_werkzeug(body, boundary)


@pytest.mark.parametrize("body", [
    b"",
    b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--b--",  # no last CRLF
    b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--b--\r\nepilogue",
    b"--b\nContent-Disposition: form-data; name=\"a\"\n\n1\n--b--\n",  # LF only
    b"--b\r\nContent-Disposition: form-data;\r\n name=\"a\"\r\n\r\n1\r\n--b--\r\n",  # folded
    b"--b\r\nContent-Type: text/plain\r\n\r\n1\r\n--b--\r\n",  # no disposition
    b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--b  \r\n"
    b"Content-Disposition: form-data; name=\"c\"\r\n\r\n2\r\n--b--\r\n",  # padded delimiter
    b"--b\r\nContent-Disposition: form-data; name*=UTF-8''%C3%A4\r\n\r\n1\r\n--b--\r\n",
    b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\nContent-Type: text/plain; "
    b"charset=iso-8859-1\r\n\r\n\xe4\r\n--b--\r\n",
    b"--b\r\nContent-Disposition: form-data; name=\"\xc3\"\r\n\r\n1\r\n--b--\r\n",  # not UTF-8
    *(b"--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.png\"\r\n" + head
      + b"\r\n\r\n\x89PNG\r\n--b--\r\n" for head in (
          b"Content-Type : image/png",  # a space before the colon
          b"Content-Type: image/png\nX-Extra: 1",  # a lone LF, a lone CR
          b"Content-Type: image/png\rX-Extra: 1",
          b"Content-Type: image/png\r\n\tX-Extra: 1",  # folded
          b"Content-Type: image/png\r\n: no name")),
])
def test_bodies_browsers_do_not_write_read_as_werkzeug_reads_them(body):
    same_as_werkzeug(body, "b")


def test_more_parts_than_allowed_are_refused_as_werkzeug_refuses_them():
    body = encode("b", [("a", None, None, b"1")] * 11)
    assert same_as_werkzeug(body, "b", max_form_parts=10) == ("refused", 413)
    assert same_as_werkzeug(body, "b", max_form_parts=11) != ("refused", 413)


def test_a_field_larger_than_the_form_memory_is_refused_as_werkzeug_refuses_it():
    body = encode("b", [("a", None, None, b"x" * 2000)])
    assert same_as_werkzeug(body, "b", max_form_memory_size=1000) == ("refused", 413)
