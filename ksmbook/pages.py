"""The bytes behind a symbolic page content, and the order memcmp() puts them in.

The simulator's pages hold symbolic contents (ints); the live kernel's hold 4096 bytes. One
rule links them, used by both sides: content 0 is an all-zero page, and content c
(1 <= c < 2**64) is its 8-byte little-endian value followed by b"ksmbook.", repeated 256
times. Different contents give different pages, and no content gives the bytes of another.

ksmd's trees are ordered by memcmp_pages() of those bytes; `memcmp_key` gives that order
without building the pages.
"""

from __future__ import annotations

from .constants import PAGE_SIZE

__all__ = ["page_bytes", "memcmp_key", "CONTENT_LIMIT"]

#: Contents are ints in [0, CONTENT_LIMIT).
CONTENT_LIMIT = 1 << 64

_SUFFIX = b"ksmbook."
_CACHE: dict[int, bytes] = {}


def _check(content: int) -> None:
    if not isinstance(content, int) or isinstance(content, bool):
        raise TypeError(f"page content must be an int, not {content!r}")
    if not 0 <= content < CONTENT_LIMIT:
        raise ValueError(f"page content out of range [0, 2**64): {content}")


def page_bytes(content: int) -> bytes:
    """The 4096 bytes of a page whose content is `content`."""
    _check(content)
    page = _CACHE.get(content)
    if page is None:
        if content == 0:
            page = bytes(PAGE_SIZE)
        else:
            page = (content.to_bytes(8, "little") + _SUFFIX) * (PAGE_SIZE // 16)
        if len(_CACHE) < 4096:
            _CACHE[content] = page
    return page


def memcmp_key(content: int) -> int:
    """A key whose int order is memcmp() order of the pages' bytes.

    The zero page is below every other page (each has a non-zero byte in its first eight);
    two other pages differ first within their first eight bytes, the content little-endian,
    so they compare as those eight bytes read big-endian.
    """
    _check(content)
    return int.from_bytes(content.to_bytes(8, "little"), "big")
