"""Small network tools for the proxy tests, run inside network namespaces with
`ip netns exec NS python3 nettools.py ...` (stdlib only: the test VM has no pip).

    nettools.py serve NAME PORT [HOST]      TCP server: answers "NAME PEER_IP\\n", closes after
                                            the client does
    nettools.py get HOST PORT N [TIMEOUT]   N sequential connections; JSON {"answers": {name: n},
                                            "peers": {ip: n}, "errors": {kind: n}}
    nettools.py hold HOST PORT N SECONDS    open N connections, print the names, keep them
                                            open SECONDS (existing connections for lc/sed/nq)
    nettools.py ping ADDR [TIMEOUT]         one ICMP echo (raw socket); exit 0 if answered

`get` and `hold` take --src ADDR[,ADDR...] to bind the client side (sh stickiness
per source). Connections send one line and read the answer, so every
connection is a complete TCP exchange (SYN ... FIN).
"""
from __future__ import annotations

import json
import os
import select
import socket
import struct
import sys
import threading
import time


def serve(name: str, port: int, host: str = "0.0.0.0") -> None:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, port))
    srv.listen(512)
    print("ready", flush=True)

    def handle(c: socket.socket, peer) -> None:
        try:
            c.settimeout(600)
            c.recv(256)
            c.sendall(f"{name} {peer[0]}\n".encode())
            while c.recv(256):      # the client closes first: held connections stay open
                pass
        except OSError:
            pass
        finally:
            c.close()

    while True:
        c, peer = srv.accept()
        threading.Thread(target=handle, args=(c, peer), daemon=True).start()


def _one(host: str, port: int, timeout: float, src: str | None) -> tuple[str, str]:
    s = socket.socket()
    s.settimeout(timeout)
    try:
        if src:
            s.bind((src, 0))
        s.connect((host, port))
        s.sendall(b"GET\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(256)
            if not chunk:
                break
            data += chunk
        name, _, peer = data.decode().strip().partition(" ")
        return name or "?", peer
    finally:
        s.close()


def get(host: str, port: int, n: int, timeout: float, srcs: list[str]) -> dict:
    out: dict = {"answers": {}, "peers": {}, "errors": {}, "sequence": []}
    for i in range(n):
        src = srcs[i % len(srcs)] if srcs else None
        try:
            name, peer = _one(host, port, timeout, src)
        except ConnectionRefusedError:
            name, peer = "!refused", ""
        except TimeoutError:
            name, peer = "!timeout", ""
        except OSError as e:
            name, peer = f"!{e.errno}", ""
        if name.startswith("!"):
            out["errors"][name[1:]] = out["errors"].get(name[1:], 0) + 1
        else:
            out["answers"][name] = out["answers"].get(name, 0) + 1
            out["peers"][peer] = out["peers"].get(peer, 0) + 1
        out["sequence"].append(name if not src else f"{src}>{name}")
    return out


def hold(host: str, port: int, n: int, seconds: float, srcs: list[str]) -> None:
    """Open n connections (kept established), print who answered each, hold them."""
    socks, names = [], []
    for i in range(n):
        s = socket.socket()
        s.settimeout(5)
        if srcs:
            s.bind((srcs[i % len(srcs)], 0))
        s.connect((host, port))
        s.sendall(b"GET\n")
        names.append(s.recv(256).decode().split(" ")[0])
        socks.append(s)
    print(json.dumps(names), flush=True)
    time.sleep(seconds)
    for s in socks:
        s.close()


def _checksum(b: bytes) -> int:
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def ping(addr: str, timeout: float = 2.0) -> bool:
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident = os.getpid() & 0xFFFF
    body = b"kcore-ping"
    hdr = struct.pack("!BBHHH", 8, 0, 0, ident, 1)
    pkt = struct.pack("!BBHHH", 8, 0, _checksum(hdr + body), ident, 1) + body
    try:
        s.sendto(pkt, (addr, 0))
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            r, _, _ = select.select([s], [], [], max(0.0, end - time.monotonic()))
            if not r:
                break
            data, src = s.recvfrom(2048)
            ihl = (data[0] & 0x0F) * 4
            typ, _code, _ck, rid, _seq = struct.unpack_from("!BBHHH", data, ihl)
            if typ == 0 and rid == ident and src[0] == addr:
                return True
        return False
    except OSError:
        return False
    finally:
        s.close()


def main(argv: list[str]) -> int:
    srcs: list[str] = []
    if "--src" in argv:
        i = argv.index("--src")
        srcs = argv[i + 1].split(",")
        argv = argv[:i] + argv[i + 2:]
    cmd = argv[0]
    if cmd == "serve":
        serve(argv[1], int(argv[2]), argv[3] if len(argv) > 3 else "0.0.0.0")
    elif cmd == "get":
        t = float(argv[4]) if len(argv) > 4 else 2.0
        print(json.dumps(get(argv[1], int(argv[2]), int(argv[3]), t, srcs)))
    elif cmd == "hold":
        hold(argv[1], int(argv[2]), int(argv[3]), float(argv[4]), srcs)
    elif cmd == "ping":
        return 0 if ping(argv[1], float(argv[2]) if len(argv) > 2 else 2.0) else 1
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
