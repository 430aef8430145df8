"""Loaded by the benchmark's local servers (run.sh puts this folder on PYTHONPATH for the
emulator and the Revio sandbox): answer with TCP_NODELAY.

Python's http.server writes a response's headers and body in two send() calls. Without
TCP_NODELAY, on a kept-alive connection the body waits for the client's delayed ACK of the
headers: about 40 ms added to every request after the first on a connection (measured
against tools/sandbox/revio.py: 1.7 ms on a new connection, 44 ms on each reuse; 0.3 ms with
TCP_NODELAY). Real Revio and AWS endpoints have no such stall, so the benchmark removes it
rather than report it as our handlers' time. Set BENCH_NODELAY=0 to measure without.
"""

import socketserver

socketserver.StreamRequestHandler.disable_nagle_algorithm = True
