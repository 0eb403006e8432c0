"""The first server of every socket tutorial: accept ONE connection, read one
message, answer `hi`, exit. wirecheck can test it because it waits for the
listening socket in the kernel's table instead of connecting to find out."""
import socket
import sys

port = int(sys.argv[1])
server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
server.bind(("127.0.0.1", port))
server.listen(1)
print("listening on", port)

conn, addr = server.accept()
print("connection from", addr)
data = conn.recv(1024)
print("received", data)
conn.sendall(b"hi " + data)
conn.close()
