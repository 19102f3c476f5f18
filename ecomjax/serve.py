"""`python -m ecomjax.serve`: the text protocol (SPEC §2) over HTTP, OpenEnv style (R§10).

Endpoints (JSON in, JSON out):

- `POST /reset {"seed": int >= 0, "env_id": str | null, "difficulty": int >= 0}` starts a session and returns
  `{"session_id", "observation", "done", "info"}`. `seed` is required (episodes are fixed by seed, task and
  difficulty); `env_id` defaults to a task of the collection drawn from the seed, `difficulty` to 0.
- `POST /step {"session_id": str, "action": str | object}` plays one agent turn and returns
  `{"session_id", "observation", "reward", "done", "info"}`. `action` is the agent's turn as the JSON text it
  wrote (or that JSON as an object). An agent turn that is not valid protocol JSON is not an HTTP error: the
  episode ends with `format_invalid`, as in `TextEnv`. Stepping a finished episode is 409.
- `POST /close {"session_id": str}` ends a session and frees its slot.
- `GET /state?session_id=...` returns the session's episode: messages (system prompt first), observation,
  reward, done, info, seed, task, difficulty, idle seconds.
- `GET /health` returns the collection, catalog size and session counts.
- `GET /oracle?session_id=...` (only with `--oracle-endpoint`, a debugging aid that reveals the answer) returns
  the scripted oracle's next turn as JSON text, ready to send to `/step`.

A bad request body (not JSON, not an object, a missing or unknown field, a wrong type) is 400, an unknown or
expired session 404, a full server (`--max-sessions`) 429; every error body is `{"error": message}`.

Sessions: each owns one `TextEnv` episode made by `EnvPool.fork`, a shallow copy of one prototype built at
start-up, so every session shares the prototype's jitted reset/step/oracle functions (compiled once, for a
batch of one), tokenizer and host catalog, and only its episode state is its own. All env calls go through
one lock: the shared tokenizer (Rust) and the jitted functions' first-call compilation are not safe to use
from several threads at once, a turn is milliseconds of work, and the interpreter lock would serialise the
host-side parsing and rendering anyway. Sessions idle for `--idle-timeout` seconds are dropped.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np

from ecomjax.catalog.spec import SPEC_FORMS, load_spec
from ecomjax.catalog.synthetic import DEFAULT_NUM_PRODUCTS, MAX_PRODUCTS, MIN_PRODUCTS
from ecomjax.curriculum import collection_tasks
from ecomjax.env import make
from ecomjax.tasks.goal import TASK_NAMES
from ecomjax.text.env import DEFAULT_TOOL_RESULT_TOKENS, Episode, TextEnv

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8000
DEFAULT_COLLECTION = "C8"
DEFAULT_MAX_SESSIONS = 64
DEFAULT_IDLE_TIMEOUT_S = 600.0
MAX_SESSIONS_LIMIT = 100_000
MAX_PORT = 65_535
MIN_TOOL_RESULT_TOKENS = 16
MAX_BODY_BYTES = 1 << 20
EXPIRED_REMEMBERED = 4096               # ids of expired sessions kept to say "expired" rather than "unknown"
RESET_FIELDS = {"seed": True, "env_id": False, "difficulty": False}     # field -> required
STEP_FIELDS = {"session_id": True, "action": True}
CLOSE_FIELDS = {"session_id": True}


class ApiError(Exception):
    """A request the server refuses: an HTTP status and a message naming the problem."""

    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status, self.message = status, message


# ------------------------------------------------------------------------------------------------ envs


class EnvPool:
    """One compiled `TextEnv` for a collection; `fork()` gives each session its own episode over it."""

    def __init__(self, prototype: TextEnv):
        self.prototype = prototype
        self.lock = threading.Lock()

    def fork(self) -> TextEnv:
        """A TextEnv sharing the prototype's jitted functions, tokenizer and host catalog, with its own episode
        state. The prototype is never reset, so its episode fields are pristine; containers are copied so no
        session can reach another's."""
        env = copy.copy(self.prototype)
        env.__dict__.update({k: copy.copy(v) for k, v in vars(env).items() if isinstance(v, (list, dict))})
        return env

    def tasks(self) -> list[str]:
        """Names of the tasks a session can ask for."""
        return [TASK_NAMES[t] for t in sorted(set(self.prototype.params.tasks))]

    def warm_up(self) -> float:
        """Compile reset, oracle and step once (batch of one); returns the seconds it took."""
        start = time.perf_counter()
        env = self.fork()
        with self.lock:
            env.reset(seed=0, env_id=self.tasks()[0], difficulty=0)
            env.step(env.oracle_action())
        return time.perf_counter() - start


def _jsonable(x: Any) -> Any:
    """`x` with NumPy values as Python ones and non-finite floats as null (strict JSON)."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, np.generic):
        return _jsonable(x.item())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


# ------------------------------------------------------------------------------------------------ sessions


@dataclass
class Session:
    """One client's episode."""

    session_id: str
    env: TextEnv
    seed: int
    difficulty: int
    last_used: float

    @property
    def episode(self) -> Episode:
        """The session's one episode (host text, info)."""
        return self.env.episodes[0]


class SessionStore:
    """The live sessions: creation under a limit, lookup, idle expiry. `clock` is injectable for tests."""

    def __init__(self, pool: EnvPool, max_sessions: int = DEFAULT_MAX_SESSIONS,
                 idle_timeout: float = DEFAULT_IDLE_TIMEOUT_S, clock: Callable[[], float] = time.monotonic):
        self.pool, self.max_sessions, self.idle_timeout, self.clock = pool, max_sessions, idle_timeout, clock
        self._sessions: dict[str, Session] = {}
        self._expired: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            self._purge_locked()
            return len(self._sessions)

    def _purge_locked(self) -> None:
        now = self.clock()
        for sid in [s for s, sess in self._sessions.items() if now - sess.last_used > self.idle_timeout]:
            del self._sessions[sid]
            self._expired[sid] = None
        while len(self._expired) > EXPIRED_REMEMBERED:
            self._expired.popitem(last=False)

    def _check_room_locked(self) -> None:
        self._purge_locked()
        if len(self._sessions) >= self.max_sessions:
            raise ApiError(HTTPStatus.TOO_MANY_REQUESTS,
                           f"session limit reached ({self.max_sessions} live sessions); close one with POST /close "
                           f"or wait for idle sessions to expire after {self.idle_timeout:g} s")

    def create(self, seed: int, env_id: str | None, difficulty: int) -> Session:
        """Reset a new episode and register it (429 when the server is full)."""
        with self._lock:
            self._check_room_locked()
        env = self.pool.fork()
        with self.pool.lock:
            try:
                env.reset(seed=seed, env_id=env_id, difficulty=difficulty)
            except ValueError as err:
                raise ApiError(HTTPStatus.BAD_REQUEST, str(err)) from None
        session = Session(uuid.uuid4().hex, env, seed, difficulty, self.clock())
        with self._lock:
            self._check_room_locked()
            self._sessions[session.session_id] = session
        return session

    def get(self, session_id: str) -> Session:
        """The live session with this id (marked as used now), else 404 saying whether it expired."""
        with self._lock:
            self._purge_locked()
            session = self._sessions.get(session_id)
            if session is None:
                if session_id in self._expired:
                    raise ApiError(HTTPStatus.NOT_FOUND, f"session_id {session_id!r} expired after {self.idle_timeout:g} "
                                                         "s idle; start a new one with POST /reset")
                raise ApiError(HTTPStatus.NOT_FOUND, f"session_id {session_id!r}: no such session")
            session.last_used = self.clock()
            return session

    def touch(self, session: Session) -> None:
        """Mark a session as used now (after a long call, so its own work never counts as idle time)."""
        with self._lock:
            session.last_used = self.clock()

    def close(self, session_id: str) -> None:
        """End a live session (404 when there is none)."""
        self.get(session_id)
        with self._lock:
            self._sessions.pop(session_id, None)


# ------------------------------------------------------------------------------------------------ API


def _fields(body: Any, spec: dict[str, bool]) -> dict:
    """The body as a dict holding every required field and only known ones (400 otherwise)."""
    if not isinstance(body, dict):
        raise ApiError(HTTPStatus.BAD_REQUEST, f"request body must be a JSON object, got {type(body).__name__}")
    unknown = sorted(set(body) - set(spec))
    if unknown:
        raise ApiError(HTTPStatus.BAD_REQUEST, f"unknown field(s) {unknown}; expected {sorted(spec)}")
    missing = [k for k, required in spec.items() if required and k not in body]
    if missing:
        raise ApiError(HTTPStatus.BAD_REQUEST, f"missing required field(s) {missing}")
    return body


def _int_field(body: dict, name: str, default: int | None = None) -> int:
    """A non-negative integer field (400 otherwise)."""
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ApiError(HTTPStatus.BAD_REQUEST, f"{name}: expected an integer >= 0, got {json.dumps(value)}")
    return value


def _str_field(body: dict, name: str, optional: bool = False) -> str | None:
    """A non-empty string field, or None when optional and absent (400 otherwise)."""
    value = body.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise ApiError(HTTPStatus.BAD_REQUEST, f"{name}: expected a non-empty string, got {json.dumps(value)}")
    return value


def _session_param(query: dict[str, list[str]]) -> str:
    """The one `session_id` query parameter (400 otherwise)."""
    values = query.get("session_id", [])
    if len(values) != 1 or not values[0]:
        raise ApiError(HTTPStatus.BAD_REQUEST, "session_id: expected exactly one query parameter ?session_id=...")
    return values[0]


class ShopApi:
    """The endpoints as functions of (query, body) -> JSON payload; HTTP lives in `_Handler`."""

    def __init__(self, store: SessionStore, oracle_endpoint: bool = False):
        self.store, self.oracle_endpoint = store, oracle_endpoint
        self.routes: dict[tuple[str, str], Callable[[dict, Any], dict]] = {
            ("POST", "/reset"): self.reset, ("POST", "/step"): self.step, ("POST", "/close"): self.close,
            ("GET", "/state"): self.state, ("GET", "/health"): self.health,
        }
        if oracle_endpoint:
            self.routes[("GET", "/oracle")] = self.oracle

    def reset(self, query: dict, body: Any) -> dict:
        """POST /reset: a new session and its first observation."""
        body = _fields(body, RESET_FIELDS)
        session = self.store.create(_int_field(body, "seed"), _str_field(body, "env_id", optional=True),
                                    _int_field(body, "difficulty", 0))
        ep = session.episode
        return {"session_id": session.session_id, "observation": session.env.observation(0), "done": ep.done,
                "info": ep.info}

    def step(self, query: dict, body: Any) -> dict:
        """POST /step: one agent turn of a session."""
        body = _fields(body, STEP_FIELDS)
        session = self.store.get(_str_field(body, "session_id"))
        action = body["action"]
        if isinstance(action, dict):
            action = json.dumps(action, ensure_ascii=False)
        if not isinstance(action, str):
            raise ApiError(HTTPStatus.BAD_REQUEST,
                           f"action: expected the agent's turn as a JSON string or object, got {type(action).__name__}")
        with self.store.pool.lock:
            if session.episode.done:
                raise ApiError(HTTPStatus.CONFLICT, f"session {session.session_id!r}: the episode is done "
                                                    f"({session.episode.info['termination_reason']}); POST /reset")
            obs, reward, done, info = session.env.step(action)
        self.store.touch(session)
        return {"session_id": session.session_id, "observation": obs, "reward": reward, "done": done, "info": info}

    def close(self, query: dict, body: Any) -> dict:
        """POST /close: end a session."""
        body = _fields(body, CLOSE_FIELDS)
        session_id = _str_field(body, "session_id")
        self.store.close(session_id)
        return {"session_id": session_id, "closed": True}

    def state(self, query: dict, body: Any) -> dict:
        """GET /state: a session's episode so far."""
        session = self.store.get(_session_param(query))
        with self.store.pool.lock:
            ep, env = session.episode, session.env
            return {"session_id": session.session_id, "env_id": ep.env_id, "seed": session.seed,
                    "difficulty": session.difficulty, "turn": int(env.host_states.turn[0]), "done": ep.done,
                    "reward": ep.reward if ep.done else None, "info": ep.info, "messages": env.messages(0),
                    "observation": env.observation(0)}

    def oracle(self, query: dict, body: Any) -> dict:
        """GET /oracle: the scripted oracle's next turn for a session (debugging)."""
        session = self.store.get(_session_param(query))
        with self.store.pool.lock:
            return {"session_id": session.session_id, "action": session.env.oracle_action(0)}

    def health(self, query: dict, body: Any) -> dict:
        """GET /health: what this server serves and how full it is."""
        proto = self.store.pool.prototype
        return {"status": "ok", "tasks": self.store.pool.tasks(), "num_products": proto.params.catalog.num_products,
                "sessions": len(self.store), "max_sessions": self.store.max_sessions,
                "idle_timeout_s": self.store.idle_timeout, "oracle_endpoint": self.oracle_endpoint}


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 JSON front of `ShopApi` (`server.api`)."""

    protocol_version = "HTTP/1.1"
    server_version = "ecomjax-serve"

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def log_message(self, format: str, *args: Any) -> None:
        if not getattr(self.server, "quiet", False):
            super().log_message(format, *args)

    def _raw_body(self) -> bytes:
        """The request's body bytes (empty when it has none)."""
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            n = int(length)
        except ValueError:
            n = -1
        if not 0 <= n <= MAX_BODY_BYTES:
            self.close_connection = True
            raise ApiError(HTTPStatus.BAD_REQUEST if n < 0 else HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                           f"Content-Length must be an integer in [0, {MAX_BODY_BYTES}], got {length!r}")
        return self.rfile.read(n)

    @staticmethod
    def _json(raw: bytes) -> Any:
        """The parsed JSON body (400 naming the syntax error)."""
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ApiError(HTTPStatus.BAD_REQUEST, f"request body is not valid JSON: {err}") from None

    def _route(self, api: "ShopApi", method: str, path: str) -> Callable[[dict, Any], dict]:
        """The endpoint for (method, path); 405 / 404 naming what exists."""
        route = api.routes.get((method, path))
        if route is not None:
            return route
        allowed = sorted(m for m, p in api.routes if p == path)
        if allowed:
            raise ApiError(HTTPStatus.METHOD_NOT_ALLOWED, f"{path} accepts {', '.join(allowed)}, not {method}")
        paths = sorted({p for _, p in api.routes})
        raise ApiError(HTTPStatus.NOT_FOUND, f"no endpoint {path}; expected one of {paths}")

    def _dispatch(self, method: str) -> None:
        """Answer one request: route, parse, call, reply with JSON (errors included)."""
        url = urlsplit(self.path)
        api: ShopApi = self.server.api  # type: ignore[attr-defined]
        try:
            raw = self._raw_body()
            route = self._route(api, method, url.path)
            body = self._json(raw) if method == "POST" else None
            status, payload = HTTPStatus.OK, route(parse_qs(url.query), body)
        except ApiError as err:
            status, payload = err.status, {"error": err.message}
        except Exception as err:  # noqa: BLE001 - the server answers, and keeps serving other sessions
            status, payload = HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"{type(err).__name__}: {err}"}
        self._send(status, payload)

    def _send(self, status: HTTPStatus, payload: dict) -> None:
        """Write one JSON response (strict JSON: no NaN)."""
        data = json.dumps(_jsonable(payload), ensure_ascii=False, allow_nan=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def make_server(api: ShopApi, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                quiet: bool = False) -> ThreadingHTTPServer:
    """A threaded HTTP server for `api`, bound (port 0 picks a free one: `server.server_address[1]`)."""
    server = ThreadingHTTPServer((host, port), _Handler)
    server.daemon_threads = True
    server.api, server.quiet = api, quiet  # type: ignore[attr-defined]
    return server


def build_pool(collection: str, catalog_spec: str, num_products: int, seed: int,
               tool_result_tokens: int = DEFAULT_TOOL_RESULT_TOKENS) -> EnvPool:
    """The env pool of a collection over the catalog a spec names."""
    catalog, vocab = load_spec(catalog_spec, num_products, seed)
    env, params = make(collection, catalog=catalog)
    return EnvPool(TextEnv(env, params, vocab, tool_result_tokens=tool_result_tokens))


# ------------------------------------------------------------------------------------------------ CLI


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags, validated (SystemExit with one message naming the flag)."""
    p = argparse.ArgumentParser(prog="python -m ecomjax.serve", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default=DEFAULT_HOST)
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    p.add_argument("--collection", default=DEFAULT_COLLECTION, help="a task (PD..JOURNEY) or C1, C2, C4, C8[-blog]")
    p.add_argument("--catalog", default="synthetic", help=" | ".join(SPEC_FORMS))
    p.add_argument("--num-products", type=int, default=DEFAULT_NUM_PRODUCTS, help="size of the synthetic catalog")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic catalog")
    p.add_argument("--max-sessions", type=int, default=DEFAULT_MAX_SESSIONS)
    p.add_argument("--idle-timeout", type=float, default=DEFAULT_IDLE_TIMEOUT_S, help="seconds")
    p.add_argument("--tool-result-tokens", type=int, default=DEFAULT_TOOL_RESULT_TOKENS)
    p.add_argument("--oracle-endpoint", action="store_true", help="serve GET /oracle (debugging; reveals answers)")
    p.add_argument("--no-warmup", action="store_true", help="compile on the first request instead of at start-up")
    p.add_argument("--quiet", action="store_true", help="no access log")
    args = p.parse_args(argv)
    try:
        collection_tasks(args.collection)
    except ValueError as err:
        raise SystemExit(f"--collection: {err}") from None
    checks = (
        ("--port", 0 <= args.port <= MAX_PORT, f"must be in [0, {MAX_PORT}], got {args.port}"),
        ("--num-products", MIN_PRODUCTS <= args.num_products <= MAX_PRODUCTS,
         f"must be in [{MIN_PRODUCTS}, {MAX_PRODUCTS}], got {args.num_products}"),
        ("--seed", args.seed >= 0, f"must be >= 0, got {args.seed}"),
        ("--max-sessions", 1 <= args.max_sessions <= MAX_SESSIONS_LIMIT,
         f"must be in [1, {MAX_SESSIONS_LIMIT}], got {args.max_sessions}"),
        ("--idle-timeout", math.isfinite(args.idle_timeout) and args.idle_timeout > 0,
         f"must be a positive number of seconds, got {args.idle_timeout}"),
        ("--tool-result-tokens", args.tool_result_tokens >= MIN_TOOL_RESULT_TOKENS,
         f"must be >= {MIN_TOOL_RESULT_TOKENS}, got {args.tool_result_tokens}"),
    )
    for flag, ok, message in checks:
        if not ok:
            raise SystemExit(f"{flag} {message}")
    return args


def main(argv: list[str] | None = None) -> None:
    """Build the env pool, compile it, and serve until interrupted."""
    args = parse_args(argv)
    try:
        pool = build_pool(args.collection, args.catalog, args.num_products, args.seed, args.tool_result_tokens)
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"--catalog {args.catalog!r}: {err}") from None
    api = ShopApi(SessionStore(pool, args.max_sessions, args.idle_timeout), args.oracle_endpoint)
    try:
        server = make_server(api, args.host, args.port, args.quiet)
    except OSError as err:
        raise SystemExit(f"--host/--port: cannot listen on {args.host}:{args.port}: {err}") from None
    if not args.no_warmup:
        print(f"compiling {args.collection} ...", file=sys.stderr, flush=True)
        print(f"compiled in {pool.warm_up():.1f} s", file=sys.stderr, flush=True)
    host, port = server.server_address[:2]
    print(f"serving {args.collection} ({', '.join(pool.tasks())}) on http://{host}:{port}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
