"""The same line-based server done right: it buffers what recv() returns and
answers once per complete line, however the stream splits or merges them."""
import socket
import sys

server = socket.socket()
server.bind(("127.0.0.1", int(sys.argv[1])))
server.listen(1)
conn, _ = server.accept()
buffer = b""
while True:
    data = conn.recv(1024)
    if not data:
        break
    buffer += data
    while b"\n" in buffer:                       # every complete line, no more
        message, buffer = buffer.split(b"\n", 1)
        print("message:", message)
        conn.sendall(b"ack:" + message + b"\n")
