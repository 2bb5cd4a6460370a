"""Micro-benchmark of the router <-> worker codec: this format against ``marshal`` (version 2).

Both run per message on the hot path (the router encodes a batch and decodes its replies, the
worker decodes the batch and encodes the replies).  Run: ``python -m bench.protocol_codec``.
"""

from __future__ import annotations

import marshal
import timeit

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
    print(f"{'batch':22} {'op':16} {'marshal us':>11} {'v3 us':>9}")
    for name, commands in CASES.items():
        replies = [b"+OK\r\n"] * len(commands)
        number = max(200, 200_000 // sum(len(args) for _, args in commands))
        m_batch = marshal.dumps(commands, 4)
        v3_batch = protocol.encode_batch(1, commands)
        m_replies = marshal.dumps((replies, ()), 4)
        v3_replies = protocol.encode_replies(SEQ, replies)
        rows = [
            ("encode batch", lambda: marshal.dumps(commands, 4),
             lambda: protocol.encode_batch(1, commands)),
            ("decode batch", lambda: marshal.loads(m_batch),
             lambda: protocol.decode_batch(v3_batch)),
            ("encode replies", lambda: marshal.dumps((replies, ()), 4),
             lambda: protocol.encode_replies(SEQ, replies)),
            ("decode replies", lambda: marshal.loads(m_replies),
             lambda: protocol.decode_replies(v3_replies)),
        ]
        for op, old, new in rows:
            print(f"{name:22} {op:16} {per_call_us(old, number):11.2f} "
                  f"{per_call_us(new, number):9.2f}")


if __name__ == "__main__":
    main()
