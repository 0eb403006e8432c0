"""A length-prefix client written the tutorial way: it reads the 4-byte length,
then calls recv(length) ONCE and assumes it got the whole body."""
import socket
import struct
import sys

host, port = sys.argv[1], int(sys.argv[2])
sock = socket.create_connection((host, port))
sock.sendall(b"GET greeting\n")
(length,) = struct.unpack("!I", sock.recv(4))
body = sock.recv(length)                # the bug: recv may return less
print("got:", body.decode())
