"""The same client done right: it reads until it has exactly as many bytes as
it asked for, for the length prefix and for the body."""
import socket
import struct
import sys


def recv_exactly(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("the server closed after %d of %d bytes" % (len(data), n))
        data += chunk
    return data


host, port = sys.argv[1], int(sys.argv[2])
sock = socket.create_connection((host, port))
sock.sendall(b"GET greeting\n")
(length,) = struct.unpack("!I", recv_exactly(sock, 4))
body = recv_exactly(sock, length)
print("got:", body.decode())
