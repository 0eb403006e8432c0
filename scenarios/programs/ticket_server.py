"""A ticket server, the kind a socket tutorial ends with: one connection logs in and
gets a ticket, another connection (another program) presents it.

    LOGIN              -> TICKET <hex>
    USE <ticket> <msg> -> OK <n> <msg>        (n counts accepted messages)
                       -> DENIED              (a ticket it never issued)
    CHECK <n>          -> SEEN <n> <ticket>   (which ticket message n came with)
"""
import secrets
import socketserver
import sys
import threading

lock = threading.Lock()
tickets = set()
seen = {}


class Session(socketserver.StreamRequestHandler):
    def handle(self):
        for raw in self.rfile:
            words = raw.decode().strip().split(" ", 2)
            with lock:
                reply = answer(words)
            self.wfile.write((reply + "\n").encode())


def answer(words):
    if words == ["LOGIN"]:
        ticket = secrets.token_hex(6)
        tickets.add(ticket)
        return "TICKET " + ticket
    if len(words) == 3 and words[0] == "USE":
        if words[1] not in tickets:
            return "DENIED"
        n = len(seen) + 1
        seen[str(n)] = words[1]
        return f"OK {n} {words[2]}"
    if len(words) == 2 and words[0] == "CHECK" and words[1] in seen:
        return f"SEEN {words[1]} {seen[words[1]]}"
    return "ERROR " + " ".join(words)


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


with Server(("127.0.0.1", int(sys.argv[1])), Session) as server:
    print("ticket server on port", sys.argv[1])
    server.serve_forever()
