"""A deliberately buggy framed server, for `wirecheck fuzz` (see FUZZING.md).

Protocol: each request is a frame, a 4-byte little-endian signed length
(`struct.pack('<i', n)`) and then n bytes of UTF-8 text; each reply is a frame of
the same shape holding the text in upper case. Frames longer than MAX_FRAME end
the connection. One connection at a time, like many first servers.

Three bugs are planted, all of the kind a hostile or broken client finds:

1. A negative length is not refused: it reaches `recv()`, which raises
   ValueError, and the uncaught exception ends the whole server.
2. The payload is decoded as UTF-8 without a guard: bytes that are not UTF-8
   raise UnicodeDecodeError, which ends the server too.
3. The receive buffer, reused from frame to frame, is grown to the length a
   frame *declares* before that length is checked against MAX_FRAME, and it
   never shrinks: one frame whose length lies leaves up to RESERVE_CAP (96 MiB)
   behind for the life of the server. The server keeps running, so only a
   memory limit sees it: `wirecheck fuzz --memory-limit 64` finds it (the
   default limit, 512 MiB of growth, is above what this bug can take).

The passing seed scenario beside this file never sends any of them; the fuzzer
does. Do not fix these bugs: the CI and the tests rely on them.
"""

import socket
import struct
import sys

MAX_FRAME = 64 * 1024
# The most the receive buffer grows to (bug 3 stays cheap to demonstrate).
RESERVE_CAP = 96 * 1024 * 1024

# The receive buffer, shared by every connection and frame; it only grows.
buffer = bytearray(4096)


def recv_exact(conn, n):
    """Reads exactly n bytes, or returns None if the peer closed first."""
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def read_frame(conn):
    header = recv_exact(conn, 4)
    if header is None:
        return None
    (length,) = struct.unpack("<i", header)
    # BUG 3: the buffer grows to the declared length before the length is
    # checked, and keeps that size for good.
    reserve(min(length, RESERVE_CAP))
    if length > MAX_FRAME:
        raise ConnectionError("frame too long: %d bytes" % length)
    if length == 0:
        return b""
    # BUG 1: a negative length is not refused; recv_into() raises ValueError.
    view = memoryview(buffer)
    got = conn.recv_into(view[: max(length, 0)], length, socket.MSG_WAITALL)
    if got < length:
        return None
    return bytes(view[:length])


def reserve(length):
    """Grows the shared receive buffer to hold `length` bytes."""
    global buffer
    if length > len(buffer):
        buffer = bytearray(length)


def serve(conn):
    while True:
        payload = read_frame(conn)
        if payload is None:
            return
        # BUG 2: the bytes are trusted to be UTF-8.
        text = payload.decode("utf-8")
        reply = text.upper().encode("utf-8")
        conn.sendall(struct.pack("<i", len(reply)) + reply)


def main():
    port = int(sys.argv[1])
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(16)
    print("buggy framed server listening on port %d" % port)
    while True:
        conn, _ = listener.accept()
        with conn:
            try:
                serve(conn)
            except (ConnectionError, OSError) as e:
                # A client that resets or sends too much is not a server bug.
                print("connection ended: %s" % e)


if __name__ == "__main__":
    main()
