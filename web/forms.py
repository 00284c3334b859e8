"""Reading posted forms: werkzeug's parser, with a shortcut for a small multipart body.

The partner's form has file fields, so every save posts it as multipart/form-data, and
werkzeug's streaming parser took a quarter of such a request's CPU: two regular expressions
compiled for each request's boundary, then a state machine for each part. A body of a few
kilobytes is split here in one piece instead, into the same names, values, files and headers.
Only a body written as browsers write it takes the shortcut (CRLF line ends, each delimiter
plain, each part with a disposition and no folded headers); any other goes to werkzeug's parser
unchanged, which also keeps its limits and its answers to malformed bodies.
"""
from __future__ import annotations

import io
import re

from flask import Request as FlaskRequest
from werkzeug.datastructures import FileStorage, Headers
from werkzeug.formparser import FormDataParser, MultiPartParser
from werkzeug.http import parse_options_header

SMALL_FORM = 64 * 1024  # bytes; werkzeug streams larger bodies (uploads) to files
# A disposition as browsers write it, with names that need no decoding; werkzeug's header
# parser reads any other (escapes, the %22 that browsers write for a quote, RFC 2231).
PLAIN_DISPOSITION = re.compile(r'form-data; name="([^"\\%]*)"(?:; filename="([^"\\%]*)")?')
WERKZEUG_PARTS = MultiPartParser()  # its rule for a part's charset


class FormParser(FormDataParser):
    """werkzeug's FormDataParser, reading a small multipart body in one piece."""

    def parse(self, stream, mimetype, content_length, options=None):
        boundary = (options or {}).get("boundary", "")
        if (mimetype != "multipart/form-data" or not boundary or content_length is None
                or content_length > SMALL_FORM
                or (self.max_form_memory_size is not None
                    and content_length > self.max_form_memory_size)):
            return super().parse(stream, mimetype, content_length, options)
        body = stream.read()
        try:
            parts = split_multipart(body, boundary.encode("ascii"))
        except (ValueError, UnicodeError):
            parts = None
        if parts is None or (self.max_form_parts is not None
                             and len(parts) > self.max_form_parts):
            return super().parse(io.BytesIO(body), mimetype, content_length, options)
        fields, files = [], []
        for name, filename, headers, data in parts:
            if filename is None:
                fields.append((name, data.decode(_charset(headers), "replace")))
            else:
                files.append((name, self._file(filename, name, headers, data, content_length)))
        return stream, self.cls(fields), self.cls(files)

    def _file(self, filename, name, headers, data, total_content_length) -> FileStorage:
        container = self.stream_factory(
            total_content_length=total_content_length, filename=filename,
            content_type=_header(headers, "content-type"), content_length=_length(headers))
        container.write(data)
        container.seek(0)
        return FileStorage(container, filename, name, headers=Headers(headers))


def split_multipart(body: bytes, boundary: bytes):
    """``(name, filename or None, headers, data)`` of each part of a multipart body written as
    browsers write it, or None where werkzeug's parser should decide."""
    delimiter = b"--" + boundary
    opening, closing = delimiter + b"\r\n", b"\r\n" + delimiter + b"--"
    if body.startswith(b"\r\n" + opening):  # an empty preamble's line end (werkzeug's client)
        body = body[2:]
    end = body.find(closing)  # what follows it is an epilogue, ignored by werkzeug too
    if not body.startswith(opening) or end == -1:
        return None
    chunks = body[len(opening):end].split(b"\r\n" + opening)
    if body.count(delimiter) != len(chunks) + 1:  # a delimiter written some other way
        return None
    parts = []
    for chunk in chunks:
        head, blank, data = chunk.partition(b"\r\n\r\n")
        if not blank:
            return None
        headers = []
        for line in head.split(b"\r\n"):
            if b"\r" in line or b"\n" in line:
                return None
            key, colon, value = line.decode().partition(":")
            if not colon or key != key.strip(" \t"):
                return None  # folded or malformed: werkzeug's parser reads those
            headers.append((key, value.strip(" \t")))
        disposition = _header(headers, "content-disposition")
        if disposition is None:
            return None
        plain = PLAIN_DISPOSITION.fullmatch(disposition)
        if plain is None:
            options = parse_options_header(disposition)[1]
            name, filename = options.get("name"), options.get("filename")
        else:
            name, filename = plain.groups()
        parts.append((name, filename, headers, data))
    return parts


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    return next((value for key, value in headers if key.lower() == name), None)


def _charset(headers: list[tuple[str, str]]) -> str:
    if _header(headers, "content-type") is None:  # as browsers send a field
        return "utf-8"
    return WERKZEUG_PARTS.get_part_charset(Headers(headers))


def _length(headers: list[tuple[str, str]]) -> int:
    value = _header(headers, "content-length") or ""
    return int(value) if value.isascii() and value.isdigit() else 0


class Request(FlaskRequest):
    form_data_parser_class = FormParser

    def _load_form_data(self):
        """The posted fields, without NUL: no keyboard types it, and PostgreSQL refuses it in
        text (a sign-in, a contact's or a token's name with one ended in a 500)."""
        super()._load_form_data()
        form = self.__dict__.get("form")
        if form and any("\x00" in value for _, value in form.items(multi=True)):
            self.__dict__["form"] = self.parameter_storage_class(
                (key, value.replace("\x00", "")) for key, value in form.items(multi=True))
