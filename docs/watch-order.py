#!/usr/bin/env python3
"""Follow one order live: the GraphQL subscription `orderUpdated` over the
`graphql-transport-ws` protocol, with nothing but Python's standard library
(a minimal WebSocket client: plain ws://, text frames, pings answered).

    python3 docs/watch-order.py --token "$ID_TOKEN" ORDER_ID
    python3 docs/watch-order.py --url http://localhost:8080 --token "$ID_TOKEN" \\
        --fields '{ status trackingId refunded history { status at } }' ORDER_ID

It prints each new state of the order as one JSON line, until the
subscription ends (an error such as FORBIDDEN or UNAUTHENTICATED is printed
and ends it) or you press Ctrl-C. A shopper may follow their own orders,
staff (admin, warehouse, delivery) any order.
"""

import argparse
import base64
import json
import os
import socket
import struct
import sys
import urllib.parse


def connect(url):
    """Opens the WebSocket at `url`/graphql asking for graphql-transport-ws."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http":
        sys.exit("only http:// URLs (put a TLS proxy's plain side here, or use a real client)")
    host, port = parts.hostname, parts.port or 80
    sock = socket.create_connection((host, port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /graphql HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n"
    )
    sock.sendall(request.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        if not chunk:
            sys.exit("the server closed the connection during the handshake")
        head += chunk
    status = head.split(b"\r\n", 1)[0].decode()
    if " 101 " not in status:
        sys.exit(f"no WebSocket: {status}")
    return sock


def send(sock, payload, opcode=0x1):
    """Sends one masked frame (clients must mask)."""
    data = payload.encode() if isinstance(payload, str) else payload
    header = bytes([0x80 | opcode])
    if len(data) < 126:
        header += bytes([0x80 | len(data)])
    elif len(data) < 65536:
        header += bytes([0x80 | 126]) + struct.pack("!H", len(data))
    else:
        header += bytes([0x80 | 127]) + struct.pack("!Q", len(data))
    mask = os.urandom(4)
    sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))


def read_exactly(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def receive(sock):
    """The next text message; answers pings; None when the server closes."""
    message = b""
    while True:
        first, second = read_exactly(sock, 2)
        opcode, length = first & 0x0F, second & 0x7F
        if length == 126:
            length = struct.unpack("!H", read_exactly(sock, 2))[0]
        elif length == 127:
            length = struct.unpack("!Q", read_exactly(sock, 8))[0]
        data = read_exactly(sock, length)
        if opcode == 0x9:  # ping
            send(sock, data, opcode=0xA)
        elif opcode == 0x8:  # close
            code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else None
            print(json.dumps({"closed": code, "reason": data[2:].decode(errors="replace")}))
            return None
        elif opcode in (0x0, 0x1, 0x2):
            message += data
            if first & 0x80:
                return message.decode()


def main():
    parser = argparse.ArgumentParser(description="Follow an order live (GraphQL orderUpdated).")
    parser.add_argument("order_id")
    parser.add_argument("--url", default=os.environ.get("ECOM_URL", "http://127.0.0.1:8080"))
    parser.add_argument("--token", required=True, help="an ID token (from /users/sign-in)")
    parser.add_argument("--fields", default="{ status trackingId refunded history { status at } }")
    args = parser.parse_args()

    sock = connect(args.url)
    send(sock, json.dumps({"type": "connection_init",
                           "payload": {"Authorization": f"Bearer {args.token}"}}))
    ack = receive(sock)
    if ack is None or json.loads(ack).get("type") != "connection_ack":
        sys.exit(f"not acknowledged: {ack}")
    query = f"subscription($id: ID!) {{ orderUpdated(orderId: $id) {args.fields} }}"
    send(sock, json.dumps({"id": "1", "type": "subscribe",
                           "payload": {"query": query, "variables": {"id": args.order_id}}}))
    try:
        while True:
            text = receive(sock)
            if text is None:
                return
            message = json.loads(text)
            if message.get("type") == "ping":
                send(sock, json.dumps({"type": "pong"}))
            elif message.get("type") == "next":
                payload = message["payload"]
                print(json.dumps(payload.get("data") or payload), flush=True)
                if payload.get("errors"):
                    return
            elif message.get("type") in ("complete", "error"):
                print(json.dumps(message), flush=True)
                return
    except KeyboardInterrupt:
        send(sock, json.dumps({"id": "1", "type": "complete"}))


if __name__ == "__main__":
    main()
