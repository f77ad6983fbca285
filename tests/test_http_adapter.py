"""HttpBlackBox against a planted model served on 127.0.0.1 (loopback only, bounded, shut down after)."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

import daxjax
from blackbox_adapters import BlackBoxError, HttpBlackBox, as_blackbox
from blackbox_adapters.http import TokenBucket
from daxjax.report import write_store_report
from planted import red_and_distractor_scene, red_fraction_box

# Every test's requests are few (tens at most) and every wait is bounded by these.
SERVER_JOIN_S = 5.0
FAST_BACKOFF = 0.01


@dataclass
class ServerState:
    """What the planted server does next, and what it has seen (guarded by `lock`)."""

    statuses: list = field(default_factory=list)  # statuses to answer with before serving normally
    reject_with: int | None = None  # answer every request with this status
    sleep_s: float = 0.0  # delay before answering
    answer: bytes | None = None  # a fixed (possibly malformed) body to answer with
    logits: bool = False  # answer logits instead of probabilities
    b64_outputs: bool = False  # answer outputs as {"b64", "shape", "dtype"}
    redirect: tuple | None = None  # (status, location): answer every POST with this redirect
    echo: bool = False  # error answers quote the request line and headers (a hostile or chatty server)
    nan_on_black: bool = False  # answer NaN for inputs with a black pixel (zero-filled perturbations)
    paths: list = field(default_factory=list)
    gets: int = 0  # body-less GETs received (after a followed redirect)
    batch_sizes: list = field(default_factory=list)
    request_times: list = field(default_factory=list)
    headers: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def requests(self) -> int:
        return len(self.request_times)


def decode_inputs(inputs) -> np.ndarray:
    if isinstance(inputs, dict):
        assert inputs["dtype"] == "float32"
        return np.frombuffer(base64.b64decode(inputs["b64"]), "<f4").reshape(inputs["shape"])
    return np.asarray(inputs, np.float32)


class PlantedHandler(BaseHTTPRequestHandler):
    """Serves planted.red_fraction_box, misbehaving as ServerState says."""

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _send(self, status: int, body: bytes, location: str | None = None) -> None:
        try:
            self.send_response(status)
            if location is not None:
                self.send_header("Location", location)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
            pass

    def do_POST(self):
        state: ServerState = self.server.state
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with state.lock:
            state.request_times.append(time.monotonic())
            state.headers.append(dict(self.headers))
            state.paths.append(self.path)
            status = state.statuses.pop(0) if state.statuses else state.reject_with
            sleep_s, answer = state.sleep_s, state.answer
        if sleep_s:
            time.sleep(sleep_s)
        if state.redirect is not None:
            self._send(state.redirect[0], b"", location=state.redirect[1])
            return
        if status is not None:
            said = f" on {self.path} with {dict(self.headers)}" if state.echo else ""
            self._send(status, json.dumps({"error": f"planted failure {status}{said}"}).encode())
            return
        if answer is not None:
            self._send(200, answer)
            return
        x = decode_inputs(json.loads(body)["inputs"])
        with state.lock:
            state.batch_sizes.append(len(x))
        probs = red_fraction_box(x).astype(np.float64)
        out = np.log(probs) + 3.0 if state.logits else probs  # logits: log-probabilities plus any constant
        if state.nan_on_black:
            out[(x == 0).all(axis=-1).any(axis=(1, 2))] = np.nan  # json.dumps writes NaN, as some servers do
        if state.b64_outputs:
            outputs = {"b64": base64.b64encode(out.astype("<f4").tobytes()).decode(), "shape": list(out.shape),
                       "dtype": "float32"}
        else:
            outputs = out.tolist()
        self._send(200, json.dumps({"outputs": outputs}).encode())

    def do_GET(self):
        """What a redirect target could answer a body-less GET with: confident probabilities."""
        state: ServerState = self.server.state
        with state.lock:
            state.gets += 1
            state.headers.append(dict(self.headers))
        self._send(200, json.dumps({"outputs": [[1.0, 0.0]] * 64}).encode())


def _serve():
    """A planted model on 127.0.0.1:<free port>: (url, state, stop)."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), PlantedHandler)
    httpd.daemon_threads = True
    httpd.state = ServerState()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()

    def stop():
        httpd.shutdown()
        httpd.server_close()
        thread.join(SERVER_JOIN_S)

    return f"http://127.0.0.1:{httpd.server_address[1]}/predict", httpd.state, stop


def _served():
    """Yields (url, state) of a fresh planted server, shut down afterwards (the fixtures' body)."""
    url, state, stop = _serve()
    try:
        yield url, state
    finally:
        stop()


@pytest.fixture
def server():
    """A planted model on 127.0.0.1:<free port>; yields (url, state); shut down afterwards."""
    yield from _served()


@pytest.fixture
def other_origin():
    """A second server on another port of 127.0.0.1: another origin, as a redirect could point to."""
    yield from _served()


def red_scenes(count: int, size: int = 16) -> np.ndarray:
    """Planted scenes; even ones have their red square painted over, so both classes occur."""
    images = np.stack([red_and_distractor_scene(seed, size)[0] for seed in range(count)])
    images[::2] = np.where(images[::2] > 0.9, 0.5, images[::2])
    return images


@pytest.mark.parametrize("encoding", ["b64", "list"])
def test_answers_and_batching(server, encoding):
    url, state = server
    x = red_scenes(10)
    bb = HttpBlackBox(url, batch_size=4, encoding=encoding, headers={"X-Api-Key": "k1"})
    probs = bb(x)
    np.testing.assert_allclose(probs, red_fraction_box(x), atol=1e-6)
    assert set(probs.argmax(axis=1)) == {0, 1}
    assert state.batch_sizes == [4, 4, 2] and state.requests == 3
    assert bb.num_classes == 2
    assert all(h["X-Api-Key"] == "k1" and h["Content-Type"] == "application/json" for h in state.headers)


@pytest.mark.parametrize("b64_outputs", [False, True])
def test_logit_answers_are_softmaxed(server, b64_outputs):
    url, state = server
    state.logits, state.b64_outputs = True, b64_outputs
    x = red_scenes(3)
    np.testing.assert_allclose(HttpBlackBox(url, output="logits")(x), red_fraction_box(x), atol=1e-5)
    with pytest.raises(BlackBoxError, match="do not sum to 1"):
        HttpBlackBox(url, output="probs")(x)


def test_num_classes_by_probe_or_first_call(server):
    url, state = server
    probed = HttpBlackBox(url, probe_shape=(16, 16, 3))
    assert probed.num_classes == 2 and state.requests == 1 and state.batch_sizes == [1]
    lazy = HttpBlackBox(url)
    assert state.requests == 1
    with pytest.raises(AttributeError, match="not known yet"):
        lazy.num_classes
    assert as_blackbox(lazy) is lazy
    lazy(red_scenes(2))
    assert lazy.num_classes == 2
    with pytest.raises(BlackBoxError, match="2 classes; expected 5"):
        HttpBlackBox(url, num_classes=5)(red_scenes(2))


def test_recovers_after_server_errors(server):
    url, state = server
    state.statuses = [503, 503]
    x = red_scenes(3)
    np.testing.assert_allclose(HttpBlackBox(url, retries=3, backoff=FAST_BACKOFF)(x), red_fraction_box(x), atol=1e-6)
    assert state.requests == 3


def test_gives_up_after_retries_naming_rows(server):
    url, state = server
    state.reject_with = 503
    x = red_scenes(6)
    bb = HttpBlackBox(url, batch_size=4, retries=2, backoff=FAST_BACKOFF)
    with pytest.raises(BlackBoxError, match=r"rows 0-3 failed after 3 attempts: #1 HTTP 503.*planted failure 503") as caught:
        bb(x)
    assert caught.value.rows == [0, 1, 2, 3]
    assert state.requests == 3


def test_back_off_doubles(server):
    url, state = server
    state.reject_with = 500
    with pytest.raises(BlackBoxError, match="after 3 attempts"):
        HttpBlackBox(url, retries=2, backoff=0.1)(red_scenes(1))
    gaps = np.diff(state.request_times)
    assert gaps[0] >= 0.1 * 0.9 and gaps[1] >= 0.2 * 0.9, gaps


def test_client_errors_are_not_retried(server):
    url, state = server
    state.reject_with = 400
    with pytest.raises(BlackBoxError, match=r"rejected: HTTP 400 Bad Request: .*planted failure 400"):
        HttpBlackBox(url, retries=5, backoff=FAST_BACKOFF)(red_scenes(2))
    assert state.requests == 1


def test_timeout_is_honoured(server):
    url, state = server
    state.sleep_s = 1.0
    bb = HttpBlackBox(url, timeout=0.2, retries=1, backoff=0.0)
    start = time.monotonic()
    with pytest.raises(BlackBoxError, match=r"failed after 2 attempts: #1 no answer within 0.2 s"):
        bb(red_scenes(1))
    assert time.monotonic() - start < 0.9  # two 0.2 s timeouts, not two 1 s answers
    state.sleep_s = 0.0
    assert bb(red_scenes(1)).shape == (1, 2)


def test_unreachable_server_is_retried_then_named():
    with socket.socket() as sock:  # a loopback port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(BlackBoxError, match=rf"failed after 2 attempts: #1 cannot reach http://127.0.0.1:{port}"):
        HttpBlackBox(f"http://127.0.0.1:{port}/", retries=1, backoff=FAST_BACKOFF, timeout=1.0)(red_scenes(1))


def test_rate_limit_is_honoured(server):
    url, state = server
    rate, k = 20.0, 6
    bb = HttpBlackBox(url, batch_size=1, max_requests_per_second=rate)
    start = time.monotonic()
    bb(red_scenes(k))
    elapsed = time.monotonic() - start
    assert state.requests == k
    # The first request goes at once, each later one waits for a token: >= (k - 1) / rate.
    assert (k - 1) / rate * 0.9 <= elapsed < 5.0, elapsed


def test_token_bucket_schedule():
    now = [0.0]
    sleeps = []

    def sleep(s):
        sleeps.append(s)
        now[0] += s

    bucket = TokenBucket(rate=4.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        bucket.acquire()
    assert sleeps == [0.25, 0.25]
    now[0] += 10.0  # a long pause refills only up to the capacity (no burst)
    bucket.acquire()
    bucket.acquire()
    assert sleeps == [0.25, 0.25, 0.25]


def test_concurrent_calls_and_requests(server):
    url, state = server
    bb = HttpBlackBox(url, batch_size=2, concurrency=3, max_requests_per_second=200.0)
    queries = [red_scenes(5 + i) for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(bb, queries))
    for x, probs in zip(queries, answers):
        np.testing.assert_allclose(probs, red_fraction_box(x), atol=1e-6)
    assert state.requests == sum(-(-len(x) // 2) for x in queries)


@pytest.mark.parametrize(
    "answer, message",
    [
        (b"<html>oops</html>", "is not JSON"),
        (b'{"predictions": [[0.5, 0.5]]}', r"no 'outputs' \(got \['predictions'\]\)"),
        (b'{"outputs": [[0.5, 0.5]]}', r"shape \(1, 2\); expected \[3, K\]"),
        (b'{"outputs": [["a", "b"]]}', "cannot read 'outputs'"),
        (b'{"outputs": {"b64": "!!", "shape": [3, 2], "dtype": "float32"}}', "cannot read 'outputs'"),
    ],
)
def test_malformed_answers_name_the_rows(server, answer, message):
    url, state = server
    state.answer = answer
    with pytest.raises(BlackBoxError, match=message) as caught:
        HttpBlackBox(url, batch_size=3)(red_scenes(5))
    assert caught.value.rows == [0, 1, 2]


def test_bad_options_and_input():
    with pytest.raises(BlackBoxError, match="url must start with http"):
        HttpBlackBox("127.0.0.1:8000")
    with pytest.raises(BlackBoxError, match="batch_size must be an integer >= 1"):
        HttpBlackBox("http://127.0.0.1:1/", batch_size=0)
    with pytest.raises(BlackBoxError, match="encoding must be"):
        HttpBlackBox("http://127.0.0.1:1/", encoding="npy")
    with pytest.raises(BlackBoxError, match="max_requests_per_second must be > 0"):
        HttpBlackBox("http://127.0.0.1:1/", max_requests_per_second=0)
    with pytest.raises(BlackBoxError, match=r"got shape \(16,\)"):
        HttpBlackBox("http://127.0.0.1:1/", num_classes=2)(np.zeros(16, np.float32))


def test_explain_end_to_end_over_http(server):
    url, state = server
    image, red, _ = red_and_distractor_scene(3, size=32)
    bb = HttpBlackBox(url, batch_size=64)
    ex = daxjax.explain(bb, image[None], method="rise", config=daxjax.RISEConfig(num_samples=256), seed=0)
    assert ex.maps.shape == (1, 32, 32) and ex.targets.tolist() == [1]
    np.testing.assert_allclose(ex.scores, red_fraction_box(image[None])[:, 1], atol=1e-6)
    assert ex.maps[0][red].mean() > ex.maps[0][~red].mean()
    assert state.requests >= 256 // 64  # every perturbation went over the wire


def test_nan_answers_over_http_name_the_image(server):
    url, state = server
    state.nan_on_black = True
    images = np.clip(red_scenes(3), 0.05, 1.0)  # no black pixel: the unperturbed answers are numbers
    with pytest.raises(BlackBoxError, match=r"NaN.*image\(s\) \[0, 1, 2\]"):
        daxjax.explain(HttpBlackBox(url, batch_size=64), images, method="rise",
                       config=daxjax.RISEConfig(num_samples=64, cells=4))
    assert state.requests <= 4  # the first bad chunk stops the run


# -- credentials: never sent elsewhere, never shown -------------------------------------------

SECRETS = ("TOPSECRET-token", "s3cr3t-password", "KEY-abcdef-123")


def secret_url(url: str) -> str:
    """url with a user name and password and a query token (all three must stay hidden)."""
    return url.replace("http://", f"http://alice:{SECRETS[1]}@") + f"?model=m1&token={SECRETS[0]}"


def assert_no_secret(text: str) -> None:
    leaked = [secret for secret in SECRETS if secret in text]
    assert not leaked, f"{leaked} in {text!r}"


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects_are_refused_not_followed(server, other_origin, status):
    url, state = server
    elsewhere, other = other_origin
    state.redirect = (status, elsewhere + "?from=redirect")
    bb = HttpBlackBox(url, headers={"Authorization": "Bearer " + SECRETS[2]}, retries=3, backoff=FAST_BACKOFF)
    with pytest.raises(BlackBoxError, match=rf"redirects \(HTTP {status}.*to {elsewhere}.*not followed") as caught:
        bb(red_scenes(2))
    assert caught.value.rows == [0, 1]
    assert state.requests == 1  # not retried
    assert other.gets == 0 and other.requests == 0 and other.headers == []  # nothing reached the other origin


def test_credentials_are_sent_but_never_shown(server):
    url, state = server
    state.reject_with, state.echo = 400, True
    bb = HttpBlackBox(secret_url(url), headers={"X-Api-Key": SECRETS[2]}, retries=0)
    with pytest.raises(BlackBoxError) as caught:
        bb(red_scenes(1))
    # Sent: basic auth from the userinfo, the query as given, the header as given.
    assert state.headers[0]["Authorization"] == "Basic " + base64.b64encode(f"alice:{SECRETS[1]}".encode()).decode()
    assert state.headers[0]["X-Api-Key"] == SECRETS[2]
    assert state.paths == [f"/predict?model=m1&token={SECRETS[0]}"]
    # Shown nowhere, though the server echoed all of it.
    assert "planted failure 400" in str(caught.value)
    for text in (str(caught.value), repr(bb), bb.url, repr(vars(bb))):
        assert_no_secret(text)
    assert bb.url == url.replace("http://", "http://***@") + "?model=***&token=***"


def test_unreachable_secret_url_is_named_without_its_secrets():
    with socket.socket() as sock:  # a loopback port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    bb = HttpBlackBox(secret_url(f"http://127.0.0.1:{port}/"), retries=0, timeout=1.0)
    with pytest.raises(BlackBoxError, match=rf"cannot reach http://\*\*\*@127.0.0.1:{port}/\?model") as caught:
        bb(red_scenes(1))
    assert_no_secret(str(caught.value))
    with pytest.raises(BlackBoxError) as caught:
        HttpBlackBox(secret_url("ftp://127.0.0.1/"))
    assert_no_secret(str(caught.value))


def test_secrets_stay_out_of_the_store_and_its_report(server, tmp_path):
    url, state = server
    state.statuses, state.echo = [400], True  # the first image's request fails, quoting the server
    images = red_scenes(3)
    bb = HttpBlackBox(secret_url(url), num_classes=2, headers={"X-Api-Key": SECRETS[2]}, batch_size=1)
    out = tmp_path / "store"
    daxjax.explain_dataset(bb, images, out, method="rise", config=daxjax.RISEConfig(num_samples=16, cells=4),
                           workers=0, progress=False, batch_size=4)
    results = daxjax.load_results(out)
    assert results.ids == ["1", "2"] and "planted failure 400" in results.errors["0"]
    assert state.requests <= 3 + 4 * 16  # unperturbed, then 16 masks per image of the batch padded to 4
    write_store_report(out, images, tmp_path / "report")
    files = [p for p in [*out.rglob("*"), *(tmp_path / "report").rglob("*")] if p.is_file()]
    assert any(p.suffix == ".html" for p in files)
    for path in files:
        assert_no_secret(path.read_bytes().decode("latin-1"))
