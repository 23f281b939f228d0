"""The demo under load: 20 gradio_client clients x 50 mixed requests against the app on 127.0.0.1, and its limits."""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import math  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from lab.checkpoints import Checkpoint  # noqa: E402
from lab.demo.canvas import mnist_to_canvas  # noqa: E402
from lab.tools import loadtest  # noqa: E402

pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402

sys.path.insert(0, str(loadtest.APP.parent))
import app as demo_app  # noqa: E402


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    proc, url = loadtest.start_app(tmp_path_factory.mktemp("app") / "app.log")
    try:
        yield url
    finally:
        loadtest.stop_app(proc)


@pytest.mark.slow
def test_twenty_clients_fifty_requests_each_without_an_error():
    summary = loadtest.load_test(loadtest.CLIENTS, loadtest.REQUESTS, seed=0, log=lambda _: None)  # starts the app
    print("\n" + loadtest.format_summary(summary))  # the figures, in the test log
    calls = summary["calls"]
    assert summary["requests"] == len(calls) == 20 * 50
    assert summary["errors"] == 0, summary["error_examples"]
    assert {c["client"] for c in calls} == set(range(20))  # every client took part
    for endpoint, _ in loadtest.MIX:  # the mix reached every endpoint, each answered and timed
        stats = summary["endpoints"][endpoint]
        assert stats["n"] > 50 and 0 < stats["p50_ms"] <= stats["p95_ms"] <= stats["max_ms"]
    assert summary["classify_accuracy"] >= 0.95  # answers under load are right, not just fast
    assert summary["server_cpu_ms_per_request"] > 0 and summary["client_cpu_ms_per_request"] > 0


def test_summary_counts_errors_and_ranks_latencies():
    calls = [loadtest.Call(0, "classify", s / 1000, True, correct=s != 30) for s in (10, 20, 30, 40)]
    calls += [loadtest.Call(1, "reconstruct", 5.0, False, error="AppError: queue full")]
    summary = loadtest.summarize(calls, wall=2.0, clients=2, requests=3)
    assert summary["errors"] == 1 and summary["error_examples"] == ["AppError: queue full"]
    # lab.stats.latency_ms: quantiles interpolate between the sorted latencies 10, 20, 30, 40 ms
    assert summary["endpoints"]["classify"] == pytest.approx({"n": 4, "p50_ms": 25, "p95_ms": 38.5, "min_ms": 10,
                                                              "max_ms": 40})
    assert summary["endpoints"]["all"]["n"] == 4  # failed calls are counted as errors, not timed
    assert math.isnan(summary["endpoints"]["interpolate"]["p50_ms"])
    assert summary["classify_accuracy"] == 0.75 and summary["requests_per_second"] == 2.5


def test_limits_are_set_on_purpose():
    demo = demo_app.build_demo(demo_app.load_models(loadtest.SHIPPED))
    assert demo._queue.max_size == demo_app.MAX_QUEUE  # a bounded queue: "queue full" rather than piling up
    assert demo._queue.default_concurrency_limit == demo_app.CONCURRENCY
    assert all(fn.concurrency_limit == "default" for fn in demo.fns.values())  # no event opts out of the limit


@pytest.mark.slow
def test_an_upload_over_the_size_limit_is_refused(app_url, tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG\r\n\x1a\n" + np.random.default_rng(0).bytes(3 * 1024 * 1024))  # 3 MB > 2 MB
    client = Client(app_url, verbose=False)
    with pytest.raises(Exception, match="(?i)exceeds the maximum file size|413|too large"):
        client.predict({"background": None, "layers": [], "composite": handle_file(str(big))}, None,
                       api_name="/classify")


@pytest.mark.slow
def test_a_full_queue_refuses_with_a_message_and_recovers(monkeypatch, tmp_path):
    """More requests at once than the queue holds: the extra ones are told the queue is full; the app keeps serving."""
    monkeypatch.setattr(demo_app, "MAX_QUEUE", 3)
    models = demo_app.load_models(loadtest.SHIPPED)
    fast = Checkpoint.probabilities

    def probabilities(self, images):  # each request holds its worker for a while, so the queue fills
        time.sleep(0.4)
        return fast(self, images)

    monkeypatch.setattr(Checkpoint, "probabilities", probabilities)
    demo = demo_app.build_demo(models)
    demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    try:
        path = tmp_path / "seven.png"
        Image.fromarray(mnist_to_canvas(demo_app.load_examples()[7][0])).save(path)
        drawing = {"background": None, "layers": [], "composite": handle_file(str(path))}
        # Each client downloads its answer's images: identical answers at once share one cached file, which the
        # app writes once (demo/app.py cache_png), so no download is cut short (gradio's own cache rewrites it)
        clients = [Client(demo.local_url, verbose=False) for _ in range(10)]
        answers: list[str] = []

        def ask(client: Client) -> None:
            try:
                answers.append(client.predict(drawing, None, api_name="/classify")[1]["label"])
            except Exception as error:  # the refusal is what is tested
                answers.append(str(error))

        threads = [threading.Thread(target=ask, args=(c,)) for c in clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        served = [a for a in answers if a == "7"]
        print(f"\n10 at once, queue of {demo_app.MAX_QUEUE}: {answers}")
        refused = [a for a in answers if "queue is full" in a.lower()]
        assert len(answers) == 10 and len(served) + len(refused) == 10, answers
        assert refused and len(served) >= demo_app.CONCURRENCY  # some refused, the rest answered right
        assert clients[0].predict(drawing, None, api_name="/classify")[1]["label"] == "7"  # and it carries on
    finally:
        demo.close()
