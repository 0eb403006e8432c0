"""A line-based server written the tutorial way: it assumes that one recv()
returns exactly one message. TCP is a byte stream, so two messages can arrive in
one recv() and one message can need two. It answers `ack:MESSAGE` per recv()."""
import socket
import sys

server = socket.socket()
server.bind(("127.0.0.1", int(sys.argv[1])))
server.listen(1)
conn, _ = server.accept()
while True:
    data = conn.recv(1024)          # the bug: one recv is not one message
    if not data:
        break
    message = data.rstrip(b"\n")
    print("message:", message)
    conn.sendall(b"ack:" + message + b"\n")
