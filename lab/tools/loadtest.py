"""The demo under load: many gradio_client clients at once, each sending a mix of requests, timed end to end.

    python -m lab.tools.loadtest [--url URL] [--clients 20] [--requests 50] [--json PATH]

Without --url it starts demo/app.py on 127.0.0.1 (offline, the shipped weights) and stops it afterwards. Every
client is its own gradio_client.Client on its own thread, so requests go through the upload route, the queue
and the event stream as a browser's do. Inputs are real MNIST test digits (demo/examples.safetensors) drawn
black on white on the 280 px canvas, so each classify answer can be checked as well as timed.
"""

import argparse
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from lab import paths
from lab.stats import latency_ms

APP = paths.DEMO_DIR / "app.py"
SHIPPED = paths.demo_checkpoints()
EXAMPLES = paths.DEMO_DIR / paths.EXAMPLES_FILE
# no analytics calls and no Hub downloads from the app or the clients; 127.0.0.1 never goes through a proxy
OFFLINE = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "NO_PROXY": "127.0.0.1,localhost"}
# the share of each endpoint in the mix: mostly classify, as the demo's first tab is used most
MIX = (("classify", 0.6), ("reconstruct", 0.25), ("interpolate", 0.15))
CLIENTS, REQUESTS = 20, 50


class LoadError(RuntimeError):
    """The app could not be started or reached."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(log: Path, *args: str, app: Path = APP, cwd: Path | None = None,
              timeout: float = 180) -> tuple[subprocess.Popen, str]:
    """Run the demo as a user does (python app.py --port N) on 127.0.0.1; wait until it answers; (process, URL)."""
    port = free_port()
    env = os.environ | OFFLINE | {"PYTHONUNBUFFERED": "1"}
    out = open(log, "w")
    proc = subprocess.Popen([sys.executable, str(app), "--host", "127.0.0.1", "--port", str(port), *args],
                            cwd=cwd or app.parent, env=env, stdout=out, stderr=subprocess.STDOUT)
    return proc, wait_for_app(proc, f"http://127.0.0.1:{port}/", log, timeout)


def wait_for_app(proc: subprocess.Popen, url: str, log: Path, timeout: float) -> str:
    """Poll url until the started app answers; LoadError (the app stopped) if it exits or stays silent."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LoadError(f"the app exited with {proc.returncode}:\n{Path(log).read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return url
        except OSError:
            time.sleep(0.5)
    stop_app(proc)
    raise LoadError(f"the app did not answer on {url} within {timeout} s:\n{Path(log).read_text()}")


def stop_app(proc: subprocess.Popen) -> None:
    """Terminate the app, killing it if it does not stop within 20 s."""
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class Call:
    client: int
    endpoint: str
    seconds: float  # from submitting the request to holding the answer, as the client sees it
    ok: bool
    correct: bool | None = None  # classify only: whether the top class is the digit drawn
    error: str = ""


def digit_files(folder: Path, per_class: int = 3) -> list[tuple[Path, int]]:
    """Real MNIST test digits drawn as the demo's 280 px canvas (black ink on white), as PNG files: (path, digit)."""
    from PIL import Image
    from safetensors.torch import load_file

    from lab.demo.canvas import mnist_to_canvas

    tensors = load_file(str(EXAMPLES))
    images, labels = tensors["images"], tensors["labels"]
    files = []
    for digit in range(10):
        for k, image in enumerate(images[labels == digit][:per_class]):
            path = Path(folder) / f"digit{digit}-{k}.png"
            Image.fromarray(mnist_to_canvas(image)).save(path)
            files.append((path, digit))
    if not files:
        raise LoadError(f"{EXAMPLES}: no example digits; run `python -m lab demo-examples`")
    return files


def _pad(path: Path) -> dict:
    """A Sketchpad value for gradio_client: the drawing as its composite (one upload)."""
    from gradio_client import handle_file

    return {"background": None, "layers": [], "composite": handle_file(str(path))}


def _request(client, endpoint: str, rng: random.Random, files: list[tuple[Path, int]]) -> bool | None:
    """Send one request to an endpoint; for classify, whether it read the digit right."""
    path, digit = rng.choice(files)
    if endpoint == "classify":
        label = client.predict(_pad(path), None, api_name="/classify")[1]  # (seen, label, bars, why, verdict)
        return label["label"] == str(digit)
    if endpoint == "reconstruct":
        _, _, mse = client.predict(_pad(path), None, api_name="/reconstruct")
        if not 0 <= float(mse) < 1:
            raise ValueError(f"reconstruct: MSE {mse} is not a per-pixel error in [0, 1)")
        return None
    other, _ = rng.choice(files)
    start, end = rng.choice([("my drawing", "my drawing"), ("my drawing", f"test digit {rng.randrange(10)}")])
    client.predict(_pad(path), _pad(other), start, end, rng.randint(2, 16), None, api_name="/interpolate")
    return None


def _client_loop(url: str, index: int, requests: int, files: list[tuple[Path, int]], seed: int,
                 start: threading.Barrier, calls: list[Call], lock: threading.Lock) -> None:
    """One client: connect, wait for the others, then send its requests one after another."""
    from gradio_client import Client

    rng = random.Random(seed * 1000 + index)
    endpoints, weights = zip(*MIX)
    mine: list[Call] = []
    try:
        client = Client(url, verbose=False, download_files=False)
    except Exception as error:  # a refused connection counts against every request this client would have sent
        start.wait()
        mine = [Call(index, "connect", 0.0, False, error=f"{type(error).__name__}: {error}")] * requests
    else:
        start.wait()
        for _ in range(requests):
            endpoint = rng.choices(endpoints, weights)[0]
            t0 = time.perf_counter()
            try:
                correct = _request(client, endpoint, rng, files)
                mine.append(Call(index, endpoint, time.perf_counter() - t0, True, correct))
            except Exception as error:  # every failure is counted and reported, never raised from a thread
                mine.append(Call(index, endpoint, time.perf_counter() - t0, False,
                                 error=f"{type(error).__name__}: {error}"[:300]))
        client.close()
    with lock:
        calls.extend(mine)


def run_load(url: str, clients: int = CLIENTS, requests: int = REQUESTS, seed: int = 0,
             log=print) -> tuple[list[Call], float]:
    """clients concurrent gradio_client clients, requests each, mixed endpoints; (every call, wall seconds)."""
    calls: list[Call] = []
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)
    with tempfile.TemporaryDirectory() as tmp:
        files = digit_files(Path(tmp))
        threads = [threading.Thread(target=_client_loop, args=(url, i, requests, files, seed, start, calls, lock),
                                    daemon=True) for i in range(clients)]
        for thread in threads:
            thread.start()
        start.wait()  # every client connected: the load starts at once
        t0 = time.perf_counter()
        total = clients * requests
        while any(t.is_alive() for t in threads):
            time.sleep(2)
            done = sum(1 for t in threads if not t.is_alive())
            log(f"  {time.perf_counter() - t0:5.0f} s: {done}/{clients} clients finished")
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - t0
    assert len(calls) == total, f"{len(calls)} calls recorded of {total}"
    return calls, wall


def summarize(calls: list[Call], wall: float, clients: int, requests: int) -> dict:
    """Errors, latency p50/p95/max (ms) overall and per endpoint, throughput, and classify accuracy."""
    ok = [c for c in calls if c.ok]
    checked = [c.correct for c in ok if c.correct is not None]
    summary = {
        "clients": clients, "requests_per_client": requests, "requests": len(calls), "errors": len(calls) - len(ok),
        "error_examples": sorted({c.error for c in calls if not c.ok})[:5],
        "wall_seconds": wall, "requests_per_second": len(calls) / wall if wall else float("nan"),
        "classify_accuracy": sum(checked) / len(checked) if checked else float("nan"),
        "endpoints": {},
    }
    for name in ["all"] + [m[0] for m in MIX]:
        summary["endpoints"][name] = latency_ms([c.seconds for c in ok if name in ("all", c.endpoint)])
    return summary


def format_summary(summary: dict) -> str:
    """A few lines for a person."""
    lines = [f"{summary['requests']} requests from {summary['clients']} clients: {summary['errors']} errors, "
             f"{summary['requests_per_second']:.1f} requests/s over {summary['wall_seconds']:.1f} s, classify "
             f"right on {summary['classify_accuracy']:.1%} of the digits"]
    for name, stats in summary["endpoints"].items():
        lines.append(f"  {name:>11}: n {stats['n']:4d}  p50 {stats['p50_ms']:7.1f} ms  p95 {stats['p95_ms']:7.1f} ms"
                     f"  max {stats['max_ms']:7.1f} ms")
    if "server_cpu_ms_per_request" in summary:
        lines.append(f"  CPU per request: server {summary['server_cpu_ms_per_request']:.1f} ms, clients "
                     f"{summary['client_cpu_ms_per_request']:.1f} ms")
    lines += [f"  error: {e}" for e in summary["error_examples"]]
    return "\n".join(lines)


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds a process has used so far (Linux /proc), or None where that cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (fields 14, 15)
    except (OSError, ValueError, IndexError):
        return None


def load_test(clients: int = CLIENTS, requests: int = REQUESTS, url: str | None = None, seed: int = 0,
              app_args: tuple[str, ...] = (), log=print) -> dict:
    """Start the demo (unless url is given), put it under load, stop it; the summary."""
    proc = None
    with tempfile.TemporaryDirectory() as tmp:
        if url is None:
            log_path = Path(tmp) / "app.log"
            log(f"starting {APP} on 127.0.0.1 (log: {log_path})")
            proc, url = start_app(log_path, *app_args)
        try:
            log(f"{clients} clients x {requests} requests ({', '.join(f'{n} {w:.0%}' for n, w in MIX)}) -> {url}")
            # CPU time of the server and of the clients (this process), to tell the app's cost from the load
            # generator's when both share one machine
            server0, client0 = process_cpu_seconds(proc.pid) if proc else None, time.process_time()
            calls, wall = run_load(url, clients, requests, seed, log)
            server1, client1 = process_cpu_seconds(proc.pid) if proc else None, time.process_time()
        finally:
            if proc is not None:
                stop_app(proc)
    summary = summarize(calls, wall, clients, requests)
    n = max(1, len(calls))
    summary["server_cpu_ms_per_request"] = (1000 * (server1 - server0) / n if server0 is not None
                                            and server1 is not None else float("nan"))
    summary["client_cpu_ms_per_request"] = 1000 * (client1 - client0) / n
    summary["calls"] = [asdict(c) for c in calls]
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.tools.loadtest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running demo (default: start demo/app.py on 127.0.0.1)")
    parser.add_argument("--clients", type=int, default=CLIENTS, help=f"concurrent clients (default {CLIENTS})")
    parser.add_argument("--requests", type=int, default=REQUESTS, help=f"requests per client (default {REQUESTS})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the summary and every call to this JSON file")
    args = parser.parse_args(argv)
    for flag in ("clients", "requests"):
        if getattr(args, flag) < 1:
            print(f"error: --{flag}: must be at least 1, got {getattr(args, flag)}", file=sys.stderr)
            return 2
    for key, value in OFFLINE.items():
        os.environ.setdefault(key, value)
    try:
        summary = load_test(args.clients, args.requests, args.url, args.seed)
    except LoadError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_summary(summary))
    if args.json:
        from lab.run_folder import write_json
        write_json(Path(args.json), summary)
        print(f"  written: {args.json}")
    return 0 if summary["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
