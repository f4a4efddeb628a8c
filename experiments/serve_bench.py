"""Throughput of `gpt serve`: N clients, each sending completion requests one after
another for a fixed time; prints the aggregate completion tokens per second and the
median request latency, as one JSON line.

    python3 experiments/serve_bench.py --url http://127.0.0.1:8000 --clients 8 --seconds 30

Standard library only (urllib and threads). Every request asks for exactly --max-tokens
tokens (a completion model never stops early without a stop sequence); 503s (a full
queue) are counted and retried after a pause, any other failure stops the run.
"""

import argparse
import json
import statistics
import threading
import time
import urllib.error
import urllib.request


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--clients", type=int, default=1)
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--prompt", default="ROMEO:")
    args = p.parse_args()
    deadline = time.monotonic() + args.seconds
    lock = threading.Lock()
    tokens, latencies, busy, errors = [0], [], [0], []

    def client(i):
        n = 0
        while time.monotonic() < deadline and not errors:
            body = {"prompt": args.prompt, "max_tokens": args.max_tokens, "seed": i * 100000 + n}
            req = urllib.request.Request(
                args.url + "/v1/completions",
                data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"},
            )
            start = time.monotonic()
            try:
                with urllib.request.urlopen(req, timeout=600) as r:
                    got = json.load(r)["usage"]["completion_tokens"]
            except urllib.error.HTTPError as e:
                if e.code == 503:
                    with lock:
                        busy[0] += 1
                    time.sleep(0.2)
                    continue
                errors.append(f"HTTP {e.code}: {e.read()[:200]!r}")
                return
            except Exception as e:  # a dropped connection is a failure of the run
                errors.append(repr(e))
                return
            with lock:
                tokens[0] += got
                latencies.append(time.monotonic() - start)
            n += 1

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - started
    if errors:
        raise SystemExit(f"error: {errors[0]}")
    print(json.dumps({
        "clients": args.clients,
        "requests": len(latencies),
        "busy_503": busy[0],
        "completion_tokens": tokens[0],
        "seconds": round(wall, 2),
        "tokens_per_s": round(tokens[0] / wall, 1),
        "median_latency_s": round(statistics.median(latencies), 3) if latencies else None,
    }))


if __name__ == "__main__":
    main()
