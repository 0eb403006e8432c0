"""A server that frames its stream properly: a u32le length, then that many bytes.

It reads until a whole frame has arrived however the bytes are split, so it passes
behind a proxy that slices every write into single bytes.
"""
import socket
import struct
import sys


def read_exactly(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


listener = socket.create_server(("127.0.0.1", int(sys.argv[1])))
conn, _ = listener.accept()
while True:
    header = read_exactly(conn, 4)
    if header is None:
        break
    (length,) = struct.unpack("<I", header)
    payload = read_exactly(conn, length)
    if payload is None:
        break
    reply = b"echo: " + payload
    conn.sendall(struct.pack("<I", len(reply)) + reply)
conn.close()
