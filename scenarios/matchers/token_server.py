"""A server that greets each connection with a fresh random session token and only
serves a client that sends it back."""
import secrets
import socket
import sys

listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", int(sys.argv[1])))
listener.listen()
while True:
    conn, _ = listener.accept()
    with conn, conn.makefile("rb") as reader:
        token = secrets.token_hex(8)
        conn.sendall(f"WELCOME\r\nTOKEN {token}\r\n".encode())
        line = reader.readline().decode().strip()
        if line == f"AUTH {token}":
            conn.sendall(b"OK hello\n")
        else:
            conn.sendall(b"DENIED\n")
