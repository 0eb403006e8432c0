"""A log server that keeps only its last lines, for `max_memory`.

Every line a client sends is kept in a ring of the last 10,000 lines and not
answered; `COUNT` answers `KEPT <lines kept> OF <lines received>`. However much a
client sends, the ring bounds what the server holds, and the scenario beside this
file checks that bound with `max_memory`: a server that kept every line would hold
tens of megabytes more and fail it.
"""
import collections
import socket
import sys

KEEP = 10_000


def main():
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", int(sys.argv[1])))
    listener.listen(16)
    print("bounded log server on port", sys.argv[1])
    ring = collections.deque(maxlen=KEEP)
    received = 0
    while True:
        conn, _ = listener.accept()
        with conn:
            try:
                for line in conn.makefile("rb"):
                    if line == b"COUNT\n":
                        conn.sendall(b"KEPT %d OF %d\n" % (len(ring), received))
                    else:
                        ring.append(line)
                        received += 1
            except OSError as e:
                print("connection ended:", e)


if __name__ == "__main__":
    main()
