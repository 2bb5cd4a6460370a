"""The core of the LCS command, reporting exactly what Redis 7.0's ``lcsCommand`` reports.

Redis fills the classic O(len(a) * len(b)) table ``L[i][j]`` (LCS length of ``a[:i]`` and
``b[:j]``) and walks back from ``(len(a), len(b))``: on equal bytes it takes the byte and moves
diagonally; otherwise it moves up (``i - 1``) only if ``L[i-1][j] > L[i][j-1]``, else left
(``j - 1``).  That tie rule decides *which* common subsequence, and so which match ranges, are
reported; ``lcs`` below follows the same walk.  The table is computed bit-parallel (one Python
int per row, Hyyro's recurrence) instead of cell by cell; the walk only needs
``L[i][j] - L[i][j-1]``, which is one bit of row ``i``.

Command shape, for the code that parses arguments and builds the reply
(``LCS key1 key2 [LEN] [IDX] [MINMATCHLEN len] [WITHMATCHLEN]``):

* Missing keys count as empty strings.  A key of another type -> ``LCS_NOT_STRINGS`` (checked
  before any option).
* Options are parsed left to right, case-insensitively; the first problem wins: an unknown
  word, or ``MINMATCHLEN`` as the last argument -> ``errors.SYNTAX``; a ``MINMATCHLEN`` value
  that is not a 64-bit integer -> ``errors.NOT_INTEGER``; negative values count as 0.
  Options may repeat.  After parsing, ``LEN`` together with ``IDX`` -> ``LCS_LEN_AND_IDX``.
* Then ``(len(a) + 1) * (len(b) + 1) * 4 > proto-max-bulk-len`` (512 MB by default) ->
  ``LCS_TOO_MUCH_MEMORY``; see :func:`table_too_big`.  (Redis also has "ERR String too long
  for LCS" for strings of 2**32 - 2 bytes or more, unreachable with that limit.)
* Replies, identical in RESP2 and RESP3 except for the map:

  - no option (``WITHMATCHLEN``/``MINMATCHLEN`` alone are ignored): bulk string, the LCS
    (``$0`` empty bulk when there is none).
  - ``LEN`` (``WITHMATCHLEN``/``MINMATCHLEN`` ignored): integer, the LCS length.
  - ``IDX``: a map of two entries, RESP2 ``*4`` / RESP3 ``%2``, always in this order:
    ``"matches"`` -> array of matches, then ``"len"`` -> integer LCS length.  Each match is
    ``[[a_start, a_end], [b_start, b_end]]`` (inclusive byte offsets, integers), plus a third
    integer ``match_len`` when ``WITHMATCHLEN`` is given.  Matches come from the end of the
    strings towards the start; those shorter than ``MINMATCHLEN`` are left out (``len`` still
    counts them).  E.g. ``ohmytext``/``mynewtext`` ``IDX``:
    ``*4 $7 matches *2 [[4,7],[5,8]] [[2,3],[0,1]] $3 len :6``.
"""

from __future__ import annotations

Range = tuple[int, int]
Match = tuple[Range, Range, int]

# lcsCommand's own error texts; not in errors.py.
LCS_NOT_STRINGS = "ERR The specified keys must contain string values"
LCS_LEN_AND_IDX = "ERR If you want both the length and indexes, please just use IDX."
LCS_TOO_MUCH_MEMORY = (
    "ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len"
)
DEFAULT_PROTO_MAX_BULK_LEN = 512 * 1024 * 1024


def table_too_big(a_len: int, b_len: int,
                  proto_max_bulk_len: int = DEFAULT_PROTO_MAX_BULK_LEN) -> bool:
    """True when Redis refuses with ``LCS_TOO_MUCH_MEMORY`` (its uint32 table would not fit)."""
    return (a_len + 1) * (b_len + 1) * 4 > proto_max_bulk_len


def lcs(a: bytes, b: bytes, want_idx: bool, min_match_len: int = 0
        ) -> tuple[bytes, int, list[Match]]:
    """Return ``(lcs_string, lcs_length, matches)`` as Redis computes them.

    ``lcs_string`` is always computed (Redis builds it for IDX too, it just does not reply
    it).  ``matches`` is filled only when ``want_idx``: ``((a_start, a_end), (b_start, b_end),
    match_len)`` in Redis's reply order, already filtered by ``min_match_len`` (<= 0: keep all).
    """
    if not a or not b:
        return b"", 0, []
    rows = _row_bits(a, b)
    length = len(b) - rows[-1].bit_count()
    chars, matches = _walk_back(a, b, rows, want_idx, max(min_match_len, 0))
    return bytes(reversed(chars)), length, matches


def _row_bits(a: bytes, b: bytes) -> list[int]:
    """Bit vectors ``V[0..len(a)]``: bit ``j - 1`` of ``V[i]`` is 0 iff L[i][j] > L[i][j-1].

    Hyyro (2004): ``V[0]`` is all ones and ``V[i] = (V + U) | (V - U)`` with
    ``U = V & match_mask(a[i-1])``, truncated to ``len(b)`` bits.
    """
    masks = _match_masks(a, b)
    full = (1 << len(b)) - 1
    row = full
    rows = [row]
    for byte in a:
        matched = row & masks[byte]
        row = ((row + matched) | (row - matched)) & full
        rows.append(row)
    return rows


def _match_masks(a: bytes, b: bytes) -> dict[int, int]:
    """For every byte of ``a``, the int whose bit ``j`` says ``b[j]`` equals that byte."""
    masks: dict[int, int] = {}
    reversed_b = b[::-1]  # so that b[0] becomes the least significant binary digit
    for byte in set(a):
        table = bytes(0x31 if other == byte else 0x30 for other in range(256))
        masks[byte] = int(reversed_b.translate(table), 2)
    return masks


def _walk_back(a: bytes, b: bytes, rows: list[int], want_idx: bool, min_match_len: int
               ) -> tuple[bytearray, list[Match]]:
    """Redis's backtracking loop: the LCS bytes (last first) and the emitted match ranges."""
    chars = bytearray()
    matches: list[Match] = []
    open_range: list[int] | None = None  # [a_start, a_end, b_start, b_end]
    i, j = len(a), len(b)
    row_bytes = (len(b) + 7) // 8
    # Bits of the current row as bytes: an O(1) test per step (shifting the int would cost
    # O(len(b)) per step, quadratic over the walk).
    row_i, row = -1, b""
    while i > 0 and j > 0:
        emit = False
        if a[i - 1] == b[j - 1]:
            chars.append(a[i - 1])
            if open_range is None:
                open_range = [i - 1, i - 1, j - 1, j - 1]
            elif open_range[0] == i and open_range[2] == j:
                open_range[0] -= 1  # the range grows backwards
                open_range[2] -= 1
            else:
                emit = True  # unreachable: a match always extends or starts a range
            if open_range[0] == 0 or open_range[2] == 0:
                emit = True
            i -= 1
            j -= 1
        else:
            if row_i != i:
                row_i, row = i, rows[i].to_bytes(row_bytes, "little")
            if not (row[(j - 1) >> 3] >> ((j - 1) & 7)) & 1:  # L[i][j-1] < L[i][j]: go up
                i -= 1
            else:
                j -= 1
            emit = open_range is not None
        if emit:
            _emit(open_range, want_idx, min_match_len, matches)
            open_range = None
    return chars, matches


def _emit(open_range: list[int], want_idx: bool, min_match_len: int, matches: list[Match]
          ) -> None:
    a_start, a_end, b_start, b_end = open_range
    match_len = a_end - a_start + 1
    if want_idx and (min_match_len == 0 or match_len >= min_match_len):
        matches.append(((a_start, a_end), (b_start, b_end), match_len))
