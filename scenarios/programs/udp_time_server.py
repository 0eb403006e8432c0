"""The tutorials' UDP time server: a datagram holds a strftime format, the reply
is the time in that format. TIME_SERVER_CLOCK (ISO 8601) fixes the clock, so a
test can know the answer. Python takes a while to start; wirecheck waits until
the socket is bound instead of guessing a delay."""
import datetime
import os
import socket
import sys

fixed = os.environ.get("TIME_SERVER_CLOCK")
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.1", int(sys.argv[1])))
print("time server ready")
while True:
    data, peer = sock.recvfrom(1024)
    now = datetime.datetime.fromisoformat(fixed) if fixed else datetime.datetime.now()
    sock.sendto(now.strftime(data.decode()).encode(), peer)
