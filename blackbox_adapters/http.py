"""A model behind an HTTP JSON endpoint as a black box: query-only access, as the paper assumes.

Standard library only (``urllib.request``, ``json``, ``base64``).

Wire format (one POST per batch of at most ``batch_size`` inputs, ``Content-Type: application/json``):

    request   {"inputs": INPUTS}
    response  {"outputs": OUTPUTS}            (HTTP 200)

    INPUTS, encoding="b64" (default):  {"b64": "<base64 of the raw bytes>", "shape": [m, H, W, C],
                                        "dtype": "float32"}
              encoding="list":         nested lists [m][H][W][C] of numbers
    OUTPUTS, either form:              [[p_0, ..., p_K-1], ...] (m rows), or
                                       {"b64": ..., "shape": [m, K], "dtype": "float32" | "float64"}

Raw bytes are little-endian, C order. Inputs are float32 in [0, 1], exactly what the explainer
queries; OUTPUTS are probabilities (``output="probs"``) or logits (``output="logits"``, softmaxed
here). Any input rank is sent as is (images ``[m, H, W, C]``, waveforms ``[m, T]``).

Failures: connection errors, timeouts, HTTP 5xx and 429 are retried ``retries`` times with
exponential back-off (``backoff * 2**attempt`` seconds); other 4xx fail at once with the status
and the start of the response body. A request that still fails raises ``BlackBoxError`` whose
``rows`` are the query rows that request carried.

Credentials: ``https://user:password@host/...`` is sent as HTTP basic auth (the userinfo never
goes into the request line); ``headers=`` are sent as given. Redirects (any 3xx) are never
followed: they are an error naming the status and the target, since following one would send
the credentials and the inputs to wherever the answer points (and urllib turns a redirected
POST into a body-less GET, whose answer would be read as the model's). Secrets never appear in
``repr``, ``url`` or error messages: the URL is shown with its userinfo and query values replaced by
``***``, and every header value, password and query value (at least 4 characters long) is
replaced by ``***`` wherever it occurs in a message, also in text the server echoes.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPException
from typing import Callable, Mapping

import numpy as np

from .base import BlackBoxError, LearnsNumClasses, OutputKind, check_output_kind

# How much of an error response's body an error message quotes.
_BODY_EXCERPT = 300
_OUTPUT_DTYPES = {"float32": np.dtype("<f4"), "float64": np.dtype("<f8")}
# Rejections worth retrying: the server is overloaded or failing, not the request malformed.
_RETRY_STATUSES = frozenset({429}) | frozenset(range(500, 600))
# Shorter secrets are not searched for in messages: replacing every "1" or "ab" would garble them.
_MIN_SECRET_LENGTH = 4
_REDACTED = "***"


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Turns every redirect into the HTTPError of the 3xx answer itself (see the module docstring)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise urllib.error.HTTPError(req.full_url, code, msg, headers, fp)


_OPENER = urllib.request.build_opener(_NoRedirects())


class _Credentials:
    """An endpoint URL split into what is sent and what may be shown.

    url: the URL requests go to (userinfo removed); shown: the URL for messages (userinfo and every
    query value replaced by ``***``); headers: the headers to send (JSON content headers, the user's
    headers, a basic-auth Authorization made from the userinfo); secrets: the strings no message may contain (userinfo, query values,
    header values, each also percent-encoded).
    """

    def __init__(self, url: str, headers: Mapping[str, str]):
        parts = urllib.parse.urlsplit(url)
        host = parts.netloc.rpartition("@")[2]
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        shown_query = "&".join(f"{name}={_REDACTED}" for name, _ in query)
        self.url = urllib.parse.urlunsplit(parts._replace(netloc=host))
        shown_host = f"{_REDACTED}@{host}" if "@" in parts.netloc else host
        self.shown = urllib.parse.urlunsplit(parts._replace(netloc=shown_host, query=shown_query))
        self.headers = {"Content-Type": "application/json", "Accept": "application/json", **headers}
        secrets = [value for _, value in query] + list(headers.values())
        if parts.username is not None:
            if any(name.lower() == "authorization" for name in self.headers):
                raise BlackBoxError(f"url {self.shown} has a user name and headers= an Authorization: give one")
            user = urllib.parse.unquote(parts.username)
            password = urllib.parse.unquote(parts.password or "")
            token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            self.headers["Authorization"] = f"Basic {token}"
            secrets += [parts.username, parts.password or "", user, password, token]
        words = [word for value in secrets for word in (value, *value.split())]
        words += [urllib.parse.quote(word, safe="") for word in words]
        # Longest first, so that a secret containing another is replaced whole.
        self.secrets = sorted({w for w in words if len(w) >= _MIN_SECRET_LENGTH}, key=len, reverse=True)

    def __repr__(self) -> str:  # debuggers and vars() show objects by their repr
        return f"_Credentials({self.shown!r}, headers={_REDACTED})"

    def redact(self, text: str) -> str:
        """text with every secret replaced by ``***``."""
        for secret in self.secrets:
            text = text.replace(secret, _REDACTED)
        return text


class TokenBucket:
    """A thread-safe rate limit: ``rate`` acquisitions per second on average, bursts of ``capacity``.

    ``acquire`` reserves a token and sleeps until it is due, so concurrent callers queue fairly.
    ``clock`` and ``sleep`` are injectable for tests.
    """

    def __init__(
        self,
        rate: float,
        capacity: float = 1.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not rate > 0:
            raise BlackBoxError(f"max_requests_per_second must be > 0, got {rate}")
        if capacity < 1:
            raise BlackBoxError(f"token bucket capacity must be >= 1, got {capacity}")
        self.rate, self.capacity = float(rate), float(capacity)
        self._clock, self._sleep = clock, sleep
        self._tokens = self.capacity
        self._updated = clock()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            # Going below zero reserves a future token; the debt is this caller's wait.
            self._tokens -= 1.0
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)


class _Retryable(Exception):
    """A failed attempt that may succeed if repeated (server error, overload, network, timeout)."""


class HttpBlackBox(LearnsNumClasses):
    """Query a classifier served over HTTP (see the module docstring for the wire format).

    Args:
        url: the endpoint receiving the POSTs (http:// or https://).
        num_classes: K. None: learned from a probe of one zero input of ``probe_shape`` at
            construction when that is given, else from the first call's answer (until then reading
            ``num_classes`` raises AttributeError, as for CallableBlackBox).
        batch_size: most inputs per request.
        timeout: seconds a request may wait to connect and for each read of the answer.
        retries: extra attempts per request after a retryable failure (0: no retry).
        backoff: seconds before the first retry; doubled for each further one.
        max_requests_per_second: rate limit over all requests of this black box (retries count),
            a token bucket of capacity 1 (no bursts); None: no limit.
        headers: extra HTTP headers, e.g. {"Authorization": "Bearer ..."} (never shown: their
            values are redacted from messages). A user name and password in the URL
            (``https://user:pw@host/``) are sent as basic auth instead.
        output: "probs" if the endpoint answers probabilities, "logits" to apply a softmax here.
        encoding: "b64" (raw float32, compact and fast) or "list" (nested JSON lists).
        concurrency: requests in flight at once within one call (answers keep the query order).
        probe_shape: the shape of one input, e.g. (224, 224, 3), for the num_classes probe.

    Thread-safe: calls may come from several threads at once (the rate limit is shared).

    Raises:
        BlackBoxError: an invalid option; on call, a request that failed for good (HTTP 4xx,
            or retries used up), an answer that is not JSON with ``outputs`` of the right shape,
            or outputs that are not probabilities. ``rows`` names the query rows concerned.
    """

    _NUM_CLASSES_HINT = "pass num_classes= or probe_shape=, or query the black box once"

    def __init__(
        self,
        url: str,
        num_classes: int | None = None,
        *,
        batch_size: int = 32,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_requests_per_second: float | None = None,
        headers: Mapping[str, str] | None = None,
        output: OutputKind = "probs",
        encoding: str = "b64",
        concurrency: int = 1,
        probe_shape: tuple[int, ...] | None = None,
    ) -> None:
        self._credentials = _Credentials(url, headers or {})
        if not url.startswith(("http://", "https://")):
            raise BlackBoxError(f"url must start with http:// or https://, got {self._credentials.shown!r}")
        for name, value, low in (("batch_size", batch_size, 1), ("retries", retries, 0), ("concurrency", concurrency, 1)):
            if int(value) != value or value < low:
                raise BlackBoxError(f"{name} must be an integer >= {low}, got {value!r}")
        if not timeout > 0:
            raise BlackBoxError(f"timeout must be > 0 seconds, got {timeout!r}")
        if backoff < 0:
            raise BlackBoxError(f"backoff must be >= 0 seconds, got {backoff!r}")
        if encoding not in ("b64", "list"):
            raise BlackBoxError(f"encoding must be 'b64' or 'list', got {encoding!r}")
        if num_classes is not None and num_classes < 1:
            raise BlackBoxError(f"num_classes must be >= 1 or None, got {num_classes}")
        self.url = self._credentials.shown  # as shown in messages; requests go to the unredacted one
        self.batch_size = int(batch_size)
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.backoff = float(backoff)
        self.output = check_output_kind(output)
        self.encoding = encoding
        self.concurrency = int(concurrency)
        self.rate_limit = None if max_requests_per_second is None else TokenBucket(max_requests_per_second)
        self._num_classes = num_classes
        if num_classes is None and probe_shape is not None:
            self(np.zeros((1, *probe_shape), dtype=np.float32))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """x: float32 [n, ...] (images [n, H, W, C] in [0, 1]) -> float32 [n, K] probabilities."""
        try:
            return self._query(x)
        except BlackBoxError as err:
            # The one exit of every failure: its message is redacted here, and the chained cause
            # (which may hold the request) is dropped.
            raise BlackBoxError(self._credentials.redact(str(err)), err.rows) from None

    def _query(self, x: np.ndarray) -> np.ndarray:
        """__call__ without the redaction of its errors."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim < 2:
            raise BlackBoxError(f"{self!r} expects a batch of inputs [n, ...], got shape {x.shape}")
        n = x.shape[0]
        if n == 0:
            if self._num_classes is None:
                raise BlackBoxError(f"{self!r}: an empty query cannot tell num_classes; pass num_classes=")
            return np.zeros((0, self._num_classes), dtype=np.float32)
        starts = range(0, n, self.batch_size)
        if self.concurrency == 1 or len(starts) == 1:
            answers = [self._request_rows(x, start) for start in starts]
        else:
            with ThreadPoolExecutor(self.concurrency) as pool:
                answers = list(pool.map(lambda start: self._request_rows(x, start), starts))
        widths = {a.shape[1] for a in answers}
        if len(widths) > 1:
            per_request = ", ".join(f"rows {s}-{s + len(a) - 1}: {a.shape[1]}" for s, a in zip(starts, answers))
            raise BlackBoxError(f"{self!r}: requests answered different numbers of classes ({per_request})")
        return self._probabilities(np.concatenate(answers), n)

    def _request_rows(self, x: np.ndarray, start: int) -> np.ndarray:
        """Rows start .. start+batch_size of x, sent as one request -> raw outputs [m, K]."""
        chunk = x[start : start + self.batch_size]
        rows = list(range(start, start + len(chunk)))
        where = f"{self!r}, request for rows {rows[0]}-{rows[-1]}"
        body = json.dumps({"inputs": self._encode(chunk)}).encode("utf-8")
        reply = self._post_with_retries(body, where, rows)
        return _decode_outputs(reply, len(chunk), where, rows)

    def _encode(self, chunk: np.ndarray):
        if self.encoding == "list":
            return chunk.tolist()
        raw = np.ascontiguousarray(chunk, dtype="<f4").tobytes()
        return {"b64": base64.b64encode(raw).decode("ascii"), "shape": list(chunk.shape), "dtype": "float32"}

    def _post_with_retries(self, body: bytes, where: str, rows: list[int]) -> bytes:
        failures = []
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                return self._post(body, where, rows)
            except _Retryable as err:
                failures.append(str(err))
        raise BlackBoxError(
            f"{where} failed after {len(failures)} attempts: " + "; ".join(f"#{i + 1} {f}" for i, f in enumerate(failures)),
            rows,
        )

    def _post(self, body: bytes, where: str, rows: list[int]) -> bytes:
        """One attempt: the response body on HTTP 200; _Retryable or BlackBoxError otherwise."""
        if self.rate_limit is not None:
            self.rate_limit.acquire()
        request = urllib.request.Request(self._credentials.url, data=body, headers=self._credentials.headers,
                                         method="POST")
        try:
            with _OPENER.open(request, timeout=self.timeout) as response:
                return response.read()
        except urllib.error.HTTPError as err:
            excerpt = _excerpt(err.read())
            if 300 <= err.code < 400:
                target = self._credentials.redact(str(err.headers.get("Location", "?")))
                raise BlackBoxError(f"{where}: the server redirects (HTTP {err.code} {err.reason}) to {target}; "
                                    "redirects are not followed, since they would carry the credentials and "
                                    "inputs elsewhere: give the final URL", rows) from None
            if err.code in _RETRY_STATUSES:
                raise _Retryable(f"HTTP {err.code} {err.reason}: {excerpt}") from err
            raise BlackBoxError(f"{where} was rejected: HTTP {err.code} {err.reason}: {excerpt}", rows) from err
        except (socket.timeout, TimeoutError) as err:
            raise _Retryable(f"no answer within {self.timeout:g} s") from err
        except urllib.error.URLError as err:
            if isinstance(err.reason, (socket.timeout, TimeoutError)):
                raise _Retryable(f"no answer within {self.timeout:g} s") from err
            raise _Retryable(f"cannot reach {self.url}: {err.reason}") from err
        except (ConnectionError, HTTPException) as err:  # e.g. the server closed the connection mid-answer
            raise _Retryable(f"connection failed: {type(err).__name__}: {err}") from err

    def __repr__(self) -> str:
        k = "?" if self._num_classes is None else self._num_classes
        return f"HttpBlackBox({self.url!r}, num_classes={k}, output={self.output!r}, batch_size={self.batch_size})"


def _excerpt(body: bytes) -> str:
    text = body[:_BODY_EXCERPT].decode("utf-8", errors="replace")
    return repr(text + ("..." if len(body) > _BODY_EXCERPT else ""))


def _decode_outputs(reply: bytes, m: int, where: str, rows: list[int]) -> np.ndarray:
    """The ``outputs`` of a JSON reply as float32 [m, K]; BlackBoxError naming the rows if malformed."""
    try:
        message = json.loads(reply)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BlackBoxError(f"{where}: the answer is not JSON ({err}): {_excerpt(reply)}", rows) from err
    if not isinstance(message, dict) or "outputs" not in message:
        keys = sorted(message) if isinstance(message, dict) else type(message).__name__
        raise BlackBoxError(f"{where}: the answer has no 'outputs' (got {keys})", rows)
    outputs = message["outputs"]
    try:
        if isinstance(outputs, dict):
            dtype = _OUTPUT_DTYPES[outputs["dtype"]]
            values = np.frombuffer(base64.b64decode(outputs["b64"], validate=True), dtype=dtype)
            values = values.reshape(outputs["shape"])
        else:
            values = np.asarray(outputs, dtype=np.float64)
    except (KeyError, TypeError, ValueError) as err:
        raise BlackBoxError(f"{where}: cannot read 'outputs' as numbers [m, K]: {type(err).__name__}: {err}",
                            rows) from err
    if values.ndim != 2 or values.shape[0] != m:
        raise BlackBoxError(f"{where}: 'outputs' has shape {values.shape}; expected [{m}, K] for {m} inputs", rows)
    return values.astype(np.float32)
