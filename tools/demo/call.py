#!/usr/bin/env python3
"""Places a paid call between two signed-in users over the WebSocket API and prints what each
side sees: ringing, the answer, the relayed WebRTC signals (a made-up SDP), every billing frame
as the coins move, and the end. For `make dev`'s demo mode (PURSE_BILLING_PERIOD_SECONDS=3).

    .venv/bin/python tools/demo/call.py --caller "$TOKEN" --callee "$TOKEN2" --periods 3

Needs `websocket-client` (installed in the stack's venv, .venv, by tools/stack/venv.sh).
Never prints tokens or tickets.
"""

import argparse
import json
import sys
import threading
import time
import urllib.error
import urllib.request

import websocket  # websocket-client


def api(base, method, path, token, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        sys.exit(f"{method} {path}: {e.code} {e.read().decode(errors='replace')}")


class Side:
    """One party's socket, printing every frame it receives and keeping them for the script."""

    def __init__(self, name, base, token):
        self.name = name
        self.frames = []
        self.cond = threading.Condition()
        url = api(base, "POST", "/v1/ws-tickets", token, {})["url"]
        self.ws = websocket.create_connection(url, timeout=5)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        while True:
            try:
                text = self.ws.recv()
            except Exception:  # closed
                return
            frame = json.loads(text)
            print(f"  {self.name:<6} <- {json.dumps(frame)}", flush=True)
            with self.cond:
                self.frames.append(frame)
                self.cond.notify_all()

    def send(self, frame):
        print(f"  {self.name:<6} -> {json.dumps(frame)}", flush=True)
        self.ws.send(json.dumps(frame))

    def wait(self, kind, seconds=30):
        return self.wait_any((kind,), seconds)

    def wait_any(self, kinds, seconds):
        deadline = time.time() + seconds
        with self.cond:
            while True:
                for i, f in enumerate(self.frames):
                    if f.get("type") in kinds:
                        return self.frames.pop(i)
                left = deadline - time.time()
                if left <= 0:
                    sys.exit(f"{self.name}: no {' or '.join(kinds)} frame within {seconds} s")
                self.cond.wait(left)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--api", default="http://127.0.0.1:3000")
    p.add_argument("--caller", required=True, help="the caller's access token")
    p.add_argument("--callee", required=True, help="the callee's access token")
    p.add_argument("--periods", type=int, default=3, help="billing periods to stay on the call")
    a = p.parse_args()

    callee_id = api(a.api, "GET", "/v1/me", a.callee)["id"]
    print("wallets before:")
    print("  caller", api(a.api, "GET", "/v1/wallet", a.caller))
    print("  callee", api(a.api, "GET", "/v1/wallet", a.callee))
    caller, callee = Side("caller", a.api, a.caller), Side("callee", a.api, a.callee)

    caller.send({"action": "call.invite", "callee_id": callee_id})
    call_id = callee.wait("call.incoming")["call_id"]
    callee.send({"action": "call.accept", "call_id": call_id})
    started = caller.wait("call.started")
    period = started["billing_period_seconds"]
    caller.send({"action": "signal", "call_id": call_id, "data": {"type": "offer", "sdp": "v=0 (demo)"}})
    callee.wait("signal")
    callee.send({"action": "signal", "call_id": call_id, "data": {"type": "answer", "sdp": "v=0 (demo)"}})
    caller.wait("signal")

    ended = None
    for _ in range(a.periods):
        frame = caller.wait_any(("billing", "call.ended"), period * 3)
        if frame["type"] == "call.ended":
            ended = frame
            break
    if not ended:
        time.sleep(period / 2)  # half a period more: charged per second
        caller.send({"action": "call.end", "call_id": call_id})
        callee.wait("call.ended")
        caller.wait("call.ended")
    time.sleep(0.5)
    print("the call:")
    print("  ", api(a.api, "GET", f"/v1/calls/{call_id}", a.caller))
    print("wallets after:")
    print("  caller", api(a.api, "GET", "/v1/wallet", a.caller))
    print("  callee", api(a.api, "GET", "/v1/wallet", a.callee))


if __name__ == "__main__":
    main()
