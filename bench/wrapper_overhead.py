"""What the metrics wrapper costs a chatty training script: the same script run directly and through
`python -m trainsmart_client wrap`, wall time and lines per second of each, and the overhead in percent
(target: at most 5%).

The script prints 10,000 lines per second (paced in 10 ms batches) for `--seconds`; every 100th line is a
JSON metric line and every 1,000th an epoch line, so the wrapper parses, coalesces and POSTs reports while it
copies the output. Reports go to a local HTTP server that accepts everything (the wrapper's full path, no
operator needed). `--unpaced` prints as fast as possible instead: the wrapper's throughput ceiling.

    .venv/bin/python bench/wrapper_overhead.py [--seconds 3] [--repeats 3] [--unpaced]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CHATTY = """
import json, sys, time
rate, seconds, paced = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3] == "paced"
total, batch = int(rate * seconds), rate // 100
start = time.monotonic()
write = sys.stdout.write
for i in range(total):
    if i % 1000 == 999:
        write(json.dumps({"epoch": i // 1000 + 1, "train_loss": 1.0 / (i + 1), "val_accuracy": 0.5}) + "\\n")
    elif i % 100 == 99:
        write(json.dumps({"step": i, "loss": 1.0 / (i + 1)}) + "\\n")
    else:
        write(f"step {i}: batch done, 32 samples, {i * 32} seen so far\\n")
    if paced and i % batch == batch - 1:
        ahead = start + (i + 1) / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
"""


class _Accept(BaseHTTPRequestHandler):
    received = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).received += 1
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rate", type=int, default=10_000, help="lines per second (paced mode)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--unpaced", action="store_true")
    args = parser.parse_args()

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Accept)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {key: value for key, value in os.environ.items() if not key.startswith("TRAINSMART_")}
    env.update(
        TRAINSMART_REPORT_URL=f"http://127.0.0.1:{server.server_address[1]}/v1/reports",
        TRAINSMART_REPORT_TOKEN="bench",  # noqa: S106 - a dummy token for a local sink
        TRAINSMART_JOB_NAME="bench",
        TRAINSMART_NAMESPACE="bench",
    )
    mode = "unpaced" if args.unpaced else "paced"
    script = [sys.executable, "-c", CHATTY, str(args.rate), str(args.seconds), mode]
    wrapped = [sys.executable, "-m", "trainsmart_client", "wrap", "--", *script]
    lines = int(args.rate * args.seconds)
    direct_times, wrapped_times = [], []
    for _ in range(args.repeats):  # interleaved, so drift in machine load hits both alike
        direct_times.append(timed(script, env))
        wrapped_times.append(timed(wrapped, env))
    server.shutdown()
    direct, through = statistics.median(direct_times), statistics.median(wrapped_times)
    print(f"{lines} lines ({mode}, {args.rate}/s target), median of {args.repeats} runs")
    print(f"direct:  {direct:.3f} s  {lines / direct:,.0f} lines/s")
    reports = _Accept.received // args.repeats
    print(f"wrapped: {through:.3f} s  {lines / through:,.0f} lines/s  ({reports} reports per run)")
    print(f"overhead: {100 * (through - direct) / direct:+.1f}% (target <= 5%)")


if __name__ == "__main__":
    main()
