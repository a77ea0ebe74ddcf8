#!/usr/bin/env python3
"""Cold start of each bundled function: process spawn -> its first Runtime API request
(GET .../invocation/next), measured against a local Runtime API stub. The authorizer reads
its secret from SSM before that request, so it is given a local moto with the parameter.

connect, disconnect, message and publish are one binary (wsctl-pubsub.zip), started with each
role's `_HANDLER` as Lambda starts it; the authorizer is authorizer.zip. A directory that holds
one zip per function (an older build) is measured the same way.

Usage: bench/coldstart.py ZIP_DIR [runs] [events]
"""
import http.server, io, os, socket, statistics, subprocess, sys, tempfile, threading, time, zipfile, json, urllib.request

zip_dir, runs = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 20
first_request = threading.Event()
arrived = [0.0]

class Runtime(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if "/invocation/next" in self.path and not first_request.is_set():
            arrived[0] = time.perf_counter()
            first_request.set()
        # Never hand out an event: the process is killed once it has asked.
        time.sleep(5)
    def log_message(self, *a):
        pass

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Runtime)
threading.Thread(target=server.serve_forever, daemon=True).start()
runtime_api = f"127.0.0.1:{server.server_address[1]}"

moto_port = free_port()
moto = subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(moto_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
endpoint = f"http://127.0.0.1:{moto_port}"
for _ in range(100):
    try:
        urllib.request.urlopen(endpoint + "/moto-api/", timeout=1); break
    except Exception:
        time.sleep(0.1)
body = json.dumps({"Name": "/bench/secret", "Value": "0" * 64, "Type": "SecureString"}).encode()
req = urllib.request.Request(endpoint + "/", data=body, headers={
    "X-Amz-Target": "AmazonSSM.PutParameter", "Content-Type": "application/x-amz-json-1.1",
    "Authorization": "AWS4-HMAC-SHA256 Credential=bench/20261125/us-east-1/ssm/aws4_request, SignedHeaders=host, Signature=0"})
urllib.request.urlopen(req)

env = dict(os.environ, AWS_LAMBDA_RUNTIME_API=runtime_api, AWS_REGION="us-east-1", AWS_ACCESS_KEY_ID="bench",
           AWS_SECRET_ACCESS_KEY="bench", AWS_ENDPOINT_URL=endpoint, AWS_LAMBDA_FUNCTION_NAME="bench",
           AWS_LAMBDA_FUNCTION_MEMORY_SIZE="128", AWS_LAMBDA_FUNCTION_VERSION="$LATEST", WSCTL_SECRET_PARAMETER="/bench/secret",
           WSCTL_TABLE_CONNECTIONS="c", WSCTL_TABLE_SUBSCRIPTIONS="s", WSCTL_TABLE_HISTORY="h", WSCTL_TABLE_COUNTERS="n",
           WSCTL_TTL_ATTRIBUTE_CONNECTIONS="ttl", WSCTL_TTL_ATTRIBUTE_SUBSCRIPTIONS="ttl", WSCTL_TTL_ATTRIBUTE_HISTORY="ttl",
           WSCTL_TTL_ATTRIBUTE_COUNTERS="ttl",
           WSCTL_CONNECTIONS_URL="http://127.0.0.1:9/dev", WSCTL_FUNCTION_PUBLISH="bench-publish", RUST_LOG="warn")
# With `events`, the pub/sub functions also build their EventBridge client, as with `events:` set.
if "events" in sys.argv[3:]:
    env["WSCTL_EVENTS"] = json.dumps({"bus": "bench", "source": "wsctl.bench.dev", "connections": True, "messages": ["*"]})
print(f"{'function':<12} {'zip bytes':>10} {'binary bytes':>13} {'median ms':>10} {'p90 ms':>8}  ({runs} runs)")
try:
    for name in ["authorizer", "connect", "disconnect", "message", "publish"]:
        path = os.path.join(zip_dir, f"{name}.zip")
        if not os.path.exists(path):
            path = os.path.join(zip_dir, "wsctl-pubsub.zip")
        with tempfile.TemporaryDirectory() as d:
            zipfile.ZipFile(path).extractall(d)
            bootstrap = os.path.join(d, "bootstrap"); os.chmod(bootstrap, 0o755)
            times = []
            for _ in range(runs + 1):
                first_request.clear()
                start = time.perf_counter()
                p = subprocess.Popen([bootstrap], env=dict(env, _HANDLER=name), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                if not first_request.wait(10):
                    p.kill(); raise SystemExit(f"{name}: no Runtime API request within 10 s")
                times.append((arrived[0] - start) * 1000)
                p.kill(); p.wait()
            times = sorted(times[1:])  # the first run warms the page cache
            print(f"{name:<12} {os.path.getsize(path):>10} {os.path.getsize(bootstrap):>13} {statistics.median(times):>10.2f} {times[int(len(times)*0.9)-1]:>8.2f}")
finally:
    moto.kill()
    server.shutdown()
