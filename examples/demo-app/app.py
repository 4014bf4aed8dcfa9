#!/usr/bin/env python3
"""tether demo app: an ordinary local Python program that knows nothing about tether.

Run under `tether exec --target pod/demo -n tether-demo`, everything it looks at below comes
from pod `demo` in the test cluster, while the process itself runs on this machine:
its env, its files, its DNS, its outgoing connections and the requests sent to the pod.
"""

import http.server
import os
import socket
import sys
import time
import urllib.request

BACKEND = "backend.tether-demo.svc.cluster.local"
# Local port; the demo's config maps it to the pod's port 8080 (incoming mode: steal).
PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 18080


def show(what, value):
    print(f"app: {what:<34} {value}", flush=True)


def attempt(fn, tries=3):
    """fn's result; on a failure (a busy machine can time a lookup out) up to `tries` times."""
    for n in range(1, tries + 1):
        try:
            result = fn()
            return result if n == 1 else f"{result} (try {n})"
        except Exception as e:  # the demo shows failures instead of a traceback
            error = e
            time.sleep(1)
    return f"FAILED: {error}"


def read_config():
    with open("/config/app.conf") as f:
        return f.readline().strip()


def backend():
    with urllib.request.urlopen(f"http://{BACKEND}/from-demo-app", timeout=10) as r:
        instance = r.headers.get("x-tether-instance", "?")
        return f"HTTP {r.status} from instance {instance!r}"


show("pid on this machine", os.getpid())
show("env DEMO_GREETING", os.environ.get("DEMO_GREETING", "<unset>"))
show("file /config/app.conf", attempt(read_config))
show(f"dns {BACKEND}", attempt(lambda: socket.gethostbyname(BACKEND)))
show(f"GET http://{BACKEND}/", attempt(backend))
show("hostname", socket.gethostname())


answered = False


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        global answered
        body = (
            f"answered by the local demo-app (pid {os.getpid()}) "
            f"instead of pod {socket.gethostname()}: {self.command} {self.path}\n"
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        show("stolen request answered", f"{self.command} {self.path}")
        answered = True

    def log_message(self, *args):
        pass


server = http.server.HTTPServer(("0.0.0.0", PORT), Handler)
server.timeout = 1
show("listening", f"local port {PORT} = pod port 8080 (stolen)")
# Until one GET is answered (the demo sends one), at most 2 minutes. Other connections, like the
# pod's TCP readiness probe (stolen too), carry no request and are skipped.
deadline = time.monotonic() + 120
while not answered and time.monotonic() < deadline:
    server.handle_request()
server.server_close()
sys.exit(0 if answered else 3)
