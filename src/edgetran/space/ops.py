"""Head operations of FlexiBERT 2.0 and their canonical order.

A head operation is written ``TYPE_PARAM``: ``sa_sdp`` (scaled dot-product attention),
``sa_wma`` (weighted multiplicative attention), ``l_dft`` / ``l_dct`` (Fourier / cosine
token mixing), ``c_K`` (dynamic span-based convolution with odd kernel size K).
"""

from __future__ import annotations

import re

#: The seven operations of the reference space, in the reference (canonical) order.
REFERENCE_OPS: tuple[str, ...] = ("sa_sdp", "sa_wma", "l_dft", "l_dct", "c_5", "c_9", "c_13")

_FIXED_RANKS = {"sa_sdp": 0, "sa_wma": 1, "l_dft": 2, "l_dct": 3}
# Sizes are int64 (at most 19 digits); longer digit strings would not even convert to int.
_CONV = re.compile(r"^c_([1-9][0-9]{0,18})$")
_HEAD_STRING = re.compile(r"^(sa_sdp|sa_wma|l_dft|l_dct|c_[0-9]{1,19})_([0-9]{1,19})$")

ALLOWED_OPS_TEXT = "sa_sdp, sa_wma, l_dft, l_dct or c_K with odd K (e.g. c_5, c_9, c_13)"


def is_valid_op(op: str) -> bool:
    """Whether ``op`` names a head operation this package can build."""
    if op in _FIXED_RANKS:
        return True
    match = _CONV.match(op)
    return bool(match) and int(match.group(1)) % 2 == 1


def op_type(op: str) -> str:
    """The operation family: ``sa``, ``l`` or ``c``."""
    return op.split("_", 1)[0]


def conv_kernel(op: str) -> int:
    """Kernel size of a ``c_K`` operation."""
    return int(op.split("_", 1)[1])


def op_sort_key(op: str) -> tuple[int, int]:
    """Canonical order: sa_sdp, sa_wma, l_dft, l_dct, then convolutions by kernel size."""
    if op in _FIXED_RANKS:
        return (_FIXED_RANKS[op], 0)
    return (4, conv_kernel(op))


def parse_head_string(text: str) -> tuple[str, int] | None:
    """Split a reference head string ``TYPE_PARAM_D`` into ``(op, d)``; ``None`` if malformed."""
    match = _HEAD_STRING.match(text)
    if not match or not is_valid_op(match.group(1)):
        return None
    return match.group(1), int(match.group(2))
