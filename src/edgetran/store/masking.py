"""Database passwords kept out of what edgetran shows or writes: one URL (:func:`mask_url`),
free text such as an exception's message or a traceback (:func:`mask_credentials`), and every
string of JSON-like data, e.g. ``result.json`` (:func:`mask_secrets`). A password becomes
``***``.

Masking errs on the side of hiding. SQLAlchemy reads a password up to the first ``@``, but a
user who left an ``@`` in it unencoded (``user:S3cret@PW@host``) means the last, so everything
from the first ``:`` after the user name to the URL's last ``@`` is hidden. A query parameter
whose name says it holds a secret (``password``, ``sslpassword``, ``passwd``, ``pwd``,
``secret``, ``token`` …) has its value hidden up to the next ``&``.

Standard library only, so that the CLI masks its error lines without importing SQLAlchemy.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

MASK = "***"

#: A URL inside free text: a scheme, ``://`` and everything up to the next blank.
_URL = re.compile(r"\b[\w.+-]+://\S*")
#: The user name and its colon, right after ``://`` (SQLAlchemy's rule for the user name).
_USER = re.compile(r"[^:/]*:")
#: A query parameter whose name says that its value is a secret.
_SECRET_PARAMETER = re.compile(
    r"[?&](?:[^=&?]*(?:pass|pwd|secret|token)[^=&?]*)=(?P<value>[^&]*)", re.IGNORECASE
)


def mask_url(url: str) -> str:
    """``url`` as it may be shown: its password, and the values of its password-like query
    parameters, replaced by ``***``. Text without ``://`` is returned as it is."""
    text = str(url)
    spans = _secret_spans(text)
    for start, end in reversed(spans):
        text = text[:start] + MASK + text[end:]
    return text


def mask_credentials(text: str) -> str:
    """``text`` with every URL in it masked as :func:`mask_url` does (a URL in free text runs
    to the next blank)."""
    return _URL.sub(lambda found: mask_url(found.group()), str(text))


def mask_secrets(data: Any) -> Any:
    """A copy of JSON-like ``data`` (dicts, lists, tuples, strings, numbers) whose strings,
    keys included, have every URL masked: what is written to a file or printed as JSON."""
    if isinstance(data, str):
        return mask_credentials(data)
    if isinstance(data, dict):
        return {mask_secrets(key): mask_secrets(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return type(data)(mask_secrets(item) for item in data)
    return data


def url_secrets(url: str) -> list[str]:
    """The secrets :func:`mask_url` hides in ``url``, as written and percent-decoded, longest
    first: what must not appear in a driver's message about that URL either."""
    text = str(url)
    found = {text[start:end] for start, end in _secret_spans(text)}
    found |= {unquote(secret) for secret in found}
    return sorted((secret for secret in found if secret), key=len, reverse=True)


def password_holds_at(url: str) -> bool:
    """Whether the user part of ``url`` runs past an ``@``: a password with an unencoded
    ``@``, which SQLAlchemy would split into a password and a host."""
    start = str(url).find("://")
    user = _USER.match(str(url), start + 3) if start >= 0 else None
    return user is not None and "@" in str(url)[user.end() : str(url).rfind("@")]


def _secret_spans(text: str) -> list[tuple[int, int]]:
    """Where the secrets of the URL ``text`` lie: ``(start, end)``, sorted, merged where they
    overlap or touch."""
    start = text.find("://")
    if start < 0:
        return []
    start += 3
    spans = []
    user, at = _USER.match(text, start), text.rfind("@")
    if user is not None and at > user.end():
        spans.append((user.end(), at))
    spans += [_value_span(found) for found in _SECRET_PARAMETER.finditer(text, start)]
    merged: list[tuple[int, int]] = []
    for begin, end in sorted(span for span in spans if span[1] > span[0]):
        if merged and begin <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((begin, end))
    return merged


def _value_span(found: re.Match) -> tuple[int, int]:
    """Where a secret parameter's value lies; a value masked already, followed by the
    punctuation of the sentence around it (``?password=***:``), keeps that punctuation, so
    that masking twice changes nothing."""
    start, end = found.span("value")
    value = found.group("value")
    if value.startswith(MASK) and not value[len(MASK) :].strip(":;,.)]'\""):
        return start, start + len(MASK)
    return start, end
