#!/usr/bin/env python3
"""Writes a pcap of TCP bulk transfers for benchmarking `wirecheck import`.

usage: python3 ci/bench/make-capture.py OUT.pcap MIB [CONNECTIONS]

Each connection: a handshake, a short request, a response of (MIB / CONNECTIONS)
MiB in 1448-byte segments (an Ethernet MSS) each acknowledged every other segment,
then both FINs. Frames are Ethernet + IPv4 + TCP between 10.0.0.1 and 10.0.0.2,
timestamps 10 us apart. Checksums are left zero (import does not check them).
"""
import struct
import sys

out, mib = sys.argv[1], float(sys.argv[2])
connections = int(sys.argv[3]) if len(sys.argv) > 3 else 4
per_conn = int(mib * (1 << 20) / connections)
MSS = 1448
payload_cache = bytes((i * 7) % 251 for i in range(MSS))

def frame(src_port, dst_port, src, dst, seq, ack, flags, payload):
    tcp = struct.pack("!HHIIBBHHH", src_port, dst_port, seq & 0xffffffff, ack & 0xffffffff,
                      5 << 4, flags, 65535, 0, 0)
    total = 20 + len(tcp) + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 0, 0, 64, 6, 0, src, dst)
    return b"\0" * 12 + b"\x08\x00" + ip + tcp + payload

with open(out, "wb") as f:
    f.write(struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 262144, 1))
    t = 0
    def write(data):
        global t
        t += 10
        f.write(struct.pack("<IIII", 1_700_000_000 + t // 1_000_000, t % 1_000_000,
                            len(data), len(data)))
        f.write(data)
    a, b = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    SYN, ACK, PSH, FIN = 0x02, 0x10, 0x08, 0x01
    for n in range(connections):
        cp, sp = 40000 + n, 8080
        cs, ss = 1000, 500000
        write(frame(cp, sp, a, b, cs, 0, SYN, b""))
        write(frame(sp, cp, b, a, ss, cs + 1, SYN | ACK, b""))
        cs += 1; ss += 1
        write(frame(cp, sp, a, b, cs, ss, ACK, b""))
        request = b"GET /bulk HTTP/1.1\r\n\r\n"
        write(frame(cp, sp, a, b, cs, ss, PSH | ACK, request))
        cs += len(request)
        sent, segments = 0, 0
        while sent < per_conn:
            size = min(MSS, per_conn - sent)
            write(frame(sp, cp, b, a, ss, cs, ACK | (PSH if sent + size == per_conn else 0),
                        payload_cache[:size]))
            ss += size; sent += size; segments += 1
            if segments % 2 == 0:
                write(frame(cp, sp, a, b, cs, ss, ACK, b""))
        write(frame(sp, cp, b, a, ss, cs, FIN | ACK, b""))
        write(frame(cp, sp, a, b, cs, ss + 1, FIN | ACK, b""))
        write(frame(sp, cp, b, a, ss + 1, cs + 1, ACK, b""))
