"""The tutorial's UDP time server: each datagram is a strftime format, the reply is
the local time in that format."""
import socket
import sys
import time

sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.1", int(sys.argv[1])))
while True:
    fmt, peer = sock.recvfrom(1024)
    sock.sendto(time.strftime(fmt.decode()).encode(), peer)
