"""Micro-benchmark of the router <-> worker codecs: the strict one (untrusted links) against
``marshal`` (trusted links), in microseconds per call.

Both run per message on the hot path (the router encodes a batch and decodes its replies, the
worker decodes the batch and encodes the replies).  Run: ``python -m bench.protocol_codec``.
The numbers are why marshal stays on trusted links (``shardis.protocol``).
"""

from __future__ import annotations

import timeit
from functools import partial

from shardis import protocol

SEQ = bytes(8)
CASES = {
    "1 GET": [(2, [b"GET", b"key:000001"])],
    "50 SET (16B values)": [(2, [b"SET", b"key:%06d" % i, b"v" * 16]) for i in range(50)],
    "500 GET": [(3, [b"GET", b"key:%06d" % i]) for i in range(500)],
    "MSET 1000 keys": [(2, [b"MSET", *[b"key:%06d" % (i // 2) for i in range(2000)]])],
}


def per_call_us(fn, number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


def main() -> None:
    print(f"{'batch':22} {'op':16} {'marshal us':>11} {'strict us':>9}")
    for name, commands in CASES.items():
        replies = [b"+OK\r\n"] * len(commands)
        number = max(200, 200_000 // sum(len(args) for _, args in commands))
        fast, strict = protocol.MARSHAL, protocol.STRICT
        rows = [
            ("encode batch", partial(fast.encode_batch, 1, commands),
             partial(strict.encode_batch, 1, commands)),
            ("decode batch", partial(fast.decode_batch, fast.encode_batch(1, commands)),
             partial(strict.decode_batch, strict.encode_batch(1, commands))),
            ("encode replies", partial(fast.encode_replies, SEQ, replies),
             partial(strict.encode_replies, SEQ, replies)),
            ("decode replies", partial(fast.decode_replies, fast.encode_replies(SEQ, replies)),
             partial(strict.decode_replies, strict.encode_replies(SEQ, replies))),
        ]
        for op, old, new in rows:
            print(f"{name:22} {op:16} {per_call_us(old, number):11.2f} "
                  f"{per_call_us(new, number):9.2f}")


if __name__ == "__main__":
    main()
