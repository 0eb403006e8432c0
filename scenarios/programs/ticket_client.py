"""A tutorial client: it gets the server's port and a ticket on its command line,
reads one note from stdin, sends it with the ticket, and prints the reply."""
import socket
import sys

port, ticket = int(sys.argv[1]), sys.argv[2]
note = sys.stdin.readline().strip()
with socket.create_connection(("127.0.0.1", port)) as conn:
    conn.sendall(f"USE {ticket} {note}\n".encode())
    reply = conn.makefile().readline().strip()
print("server replied:", reply)
if not reply.startswith("OK "):
    sys.exit(1)
