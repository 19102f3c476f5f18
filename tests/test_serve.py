"""The HTTP server: one STATUS server for the module, driven by a real HTTP client (urllib) from threads."""

import json
import threading
import time
import urllib.error
import urllib.request

import pytest

from ecomjax import serve
from ecomjax.text import TextEnv
from ecomjax.text.env import programs

MAX_SESSIONS = 6
IDLE_TIMEOUT_S = 600.0
MAX_TURNS = 40


class Clock:
    """Monotonic time plus an offset the tests move forward."""

    def __init__(self):
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


class Client:
    """JSON over HTTP to one server; every call returns (status, body)."""

    def __init__(self, port: int):
        self.base = f"http://127.0.0.1:{port}"

    def request(self, method: str, path: str, data: bytes | None = None) -> tuple[int, dict]:
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def post(self, path: str, body) -> tuple[int, dict]:
        return self.request("POST", path, json.dumps(body).encode())

    def get(self, path: str) -> tuple[int, dict]:
        return self.request("GET", path)

    def reset(self, seed: int, difficulty: int = 3) -> dict:
        status, body = self.post("/reset", {"seed": seed, "env_id": "STATUS", "difficulty": difficulty})
        assert status == 200, body
        return body

    def play_oracle(self, session_id: str) -> list[dict]:
        """Oracle turns (from GET /oracle) until done; returns the step responses, each with the turn `sent`."""
        steps = []
        for _ in range(MAX_TURNS):
            status, oracle = self.get(f"/oracle?session_id={session_id}")
            assert status == 200, oracle
            status, step = self.post("/step", {"session_id": session_id, "action": oracle["action"]})
            assert status == 200, step
            steps.append({**step, "sent": oracle["action"]})
            if step["done"]:
                return steps
        raise AssertionError(f"episode {session_id} did not end in {MAX_TURNS} turns")

    def messages(self, session_id: str) -> list[dict]:
        status, state = self.get(f"/state?session_id={session_id}")
        assert status == 200, state
        return state["messages"]

    def close(self, session_id: str) -> None:
        assert self.post("/close", {"session_id": session_id})[0] == 200


def _serve(api: serve.ShopApi) -> serve.ThreadingHTTPServer:
    server = serve.make_server(api, "127.0.0.1", 0, quiet=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def app(small_catalog, status_env):
    pool = serve.EnvPool(TextEnv(*status_env, small_catalog[1], tool_result_tokens=128))
    clock = Clock()
    store = serve.SessionStore(pool, MAX_SESSIONS, IDLE_TIMEOUT_S, clock=clock)
    server = _serve(serve.ShopApi(store, oracle_endpoint=True))
    yield {"client": Client(server.server_address[1]), "pool": pool, "store": store, "clock": clock}
    server.shutdown()
    server.server_close()


@pytest.fixture
def client(app):
    """The client, with every session of earlier tests expired first."""
    app["clock"].advance(IDLE_TIMEOUT_S + 1)
    assert len(app["store"]) == 0
    return app["client"]


def test_health(client):
    status, body = client.get("/health")
    assert status == 200 and body["status"] == "ok" and body["tasks"] == ["STATUS"]
    assert body["num_products"] == 2000 and body["max_sessions"] == MAX_SESSIONS and body["oracle_endpoint"]


def test_oracle_episode_over_http_matches_the_in_process_text_env(client, app):
    reset = client.reset(seed=5, difficulty=4)
    sid = reset["session_id"]
    obs = reset["observation"]
    assert not reset["done"] and obs["env_id"] == "STATUS" and obs["turn"] == 0
    assert [m["role"] for m in obs["conversation"]] == ["user"]
    steps = client.play_oracle(sid)
    last = steps[-1]
    assert last["info"]["is_correct"] and last["info"]["termination_reason"] == "agent_done"
    assert last["reward"] == last["observation"]["reward"] > 0
    assert any(m["role"] == "tool" for s in steps for m in s["observation"]["new_messages"])

    local = app["pool"].fork()
    with app["pool"].lock:
        local.reset(seed=5, env_id="STATUS", difficulty=4)
        for s in steps:
            local.step(s["sent"])
        expected = local.messages(0)
    assert client.messages(sid) == expected
    status, state = client.get(f"/state?session_id={sid}")
    assert state["done"] and state["seed"] == 5 and state["difficulty"] == 4 and state["turn"] == len(steps)
    client.close(sid)


def test_action_may_be_a_json_object_and_bad_agent_turns_are_episode_data(client):
    a, b = client.reset(seed=9)["session_id"], client.reset(seed=9)["session_id"]
    action = json.loads(client.get(f"/oracle?session_id={a}")[1]["action"])
    sa = client.post("/step", {"session_id": a, "action": json.dumps(action)})[1]
    sb = client.post("/step", {"session_id": b, "action": action})[1]
    assert sa["observation"]["new_messages"] == sb["observation"]["new_messages"]

    status, bad = client.post("/step", {"session_id": a, "action": "I think it shipped"})
    assert status == 200 and bad["done"] and bad["reward"] == -1.0
    assert bad["info"]["termination_reason"] == "format_invalid" and "not valid JSON" in bad["info"]["format_error"]
    status, again = client.post("/step", {"session_id": a, "action": action})
    assert status == 409 and "episode is done" in again["error"]
    client.close(a)
    client.close(b)


def _transcript(client: Client, seed: int, barrier: threading.Barrier, out: dict, slot: int) -> None:
    sid = client.reset(seed=seed, difficulty=6)["session_id"]
    barrier.wait(timeout=120)
    client.play_oracle(sid)
    out[slot] = client.messages(sid)
    client.close(sid)


def test_concurrent_sessions_are_isolated(client, app):
    proto = app["pool"].prototype
    shared = programs(proto.env)
    compiled = (shared.reset, shared.step, shared.oracle)
    warm = client.reset(seed=10, difficulty=6)["session_id"]
    client.play_oracle(warm)
    client.close(warm)
    cache_before = [f._cache_size() for f in compiled]
    seeds = [11, 12, 11, 12, 13]
    barrier, out = threading.Barrier(len(seeds)), {}
    threads = [threading.Thread(target=_transcript, args=(client, s, barrier, out, i)) for i, s in enumerate(seeds)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert sorted(out) == list(range(len(seeds)))
    assert out[0] == out[2] and out[1] == out[3]
    assert out[0] != out[1] and out[0] != out[4]
    sequential = {}
    _transcript(client, 11, threading.Barrier(1), sequential, 0)
    assert sequential[0] == out[0]
    assert [f._cache_size() for f in compiled] == cache_before, "a session recompiled"


def test_sessions_share_the_prototype_compiled_functions_but_not_episodes(app):
    pool = app["pool"]
    a, b = pool.fork(), pool.fork()
    assert a._step is b._step is pool.prototype._step and a.tokenizer is pool.prototype.tokenizer
    assert a.episodes is not b.episodes and pool.prototype.states is None


@pytest.mark.parametrize("body, status, words", [
    (b"{not json", 400, "not valid JSON"),
    (b"[1, 2]", 400, "must be a JSON object"),
    (b"", 400, "not valid JSON"),
    (json.dumps({"env_id": "STATUS"}).encode(), 400, "missing required field(s) ['seed']"),
    (json.dumps({"seed": 1, "difficuly": 3}).encode(), 400, "unknown field(s) ['difficuly']"),
    (json.dumps({"seed": -1}).encode(), 400, "seed: expected an integer >= 0"),
    (json.dumps({"seed": True}).encode(), 400, "seed: expected an integer >= 0"),
    (json.dumps({"seed": 1, "difficulty": "hard"}).encode(), 400, "difficulty: expected an integer >= 0"),
    (json.dumps({"seed": 1, "env_id": "PD"}).encode(), 400, "not in this env's collection"),
    (json.dumps({"seed": 1, "env_id": "SHOPPING"}).encode(), 400, "unknown task"),
])
def test_bad_reset_requests(client, body, status, words):
    got, err = client.request("POST", "/reset", body)
    assert got == status and words in err["error"]


def test_bad_step_state_and_routing_requests(client):
    sid = client.reset(seed=1)["session_id"]
    cases = [
        (client.post("/step", {"session_id": sid}), 400, "missing required field(s) ['action']"),
        (client.post("/step", {"session_id": sid, "action": 7}), 400, "action: expected the agent's turn"),
        (client.post("/step", {"session_id": 3, "action": "{}"}), 400, "session_id: expected a non-empty string"),
        (client.post("/step", {"session_id": "nope", "action": "{}"}), 404, "'nope': no such session"),
        (client.get("/state"), 400, "session_id"),
        (client.get("/state?session_id=nope"), 404, "no such session"),
        (client.post("/close", {"session_id": "nope"}), 404, "no such session"),
        (client.get("/reset"), 405, "/reset accepts POST"),
        (client.get("/teleport"), 404, "no endpoint /teleport"),
    ]
    for (got, err), status, words in cases:
        assert got == status and words in err["error"], (status, words, got, err)
    client.close(sid)


def test_oracle_endpoint_is_off_unless_asked_for(client, app):
    server = _serve(serve.ShopApi(app["store"]))
    try:
        sid = client.reset(seed=2)["session_id"]
        status, err = Client(server.server_address[1]).get(f"/oracle?session_id={sid}")
        assert status == 404 and "no endpoint /oracle" in err["error"]
        client.close(sid)
    finally:
        server.shutdown()
        server.server_close()


def test_session_limit(client):
    sids = [client.reset(seed=s)["session_id"] for s in range(MAX_SESSIONS)]
    status, err = client.post("/reset", {"seed": 99, "env_id": "STATUS"})
    assert status == 429 and f"session limit reached ({MAX_SESSIONS}" in err["error"]
    assert client.get("/health")[1]["sessions"] == MAX_SESSIONS
    client.close(sids.pop())
    sids.append(client.reset(seed=99)["session_id"])
    for sid in sids:
        client.close(sid)
    assert client.get("/health")[1]["sessions"] == 0


def test_idle_sessions_expire(client, app):
    old, fresh = client.reset(seed=3)["session_id"], None
    app["clock"].advance(IDLE_TIMEOUT_S / 2)
    fresh = client.reset(seed=4)["session_id"]
    app["clock"].advance(IDLE_TIMEOUT_S / 2 + 1)
    status, err = client.post("/step", {"session_id": old, "action": "{}"})
    assert status == 404 and "expired after 600 s idle" in err["error"]
    assert client.get(f"/state?session_id={fresh}")[0] == 200
    assert client.get("/health")[1]["sessions"] == 1
    client.close(fresh)


@pytest.mark.parametrize("argv, words", [
    (["--collection", "C3"], "--collection: collection: unknown value 'C3'"),
    (["--port", "70000"], "--port must be in [0, 65535]"),
    (["--num-products", "5"], "--num-products must be in [100, 2000000]"),
    (["--seed", "-1"], "--seed must be >= 0"),
    (["--max-sessions", "0"], "--max-sessions must be in [1, 100000]"),
    (["--idle-timeout", "0"], "--idle-timeout must be a positive number of seconds"),
    (["--idle-timeout", "nan"], "--idle-timeout must be a positive number of seconds"),
    (["--tool-result-tokens", "3"], "--tool-result-tokens must be >= 16"),
])
def test_flags_are_validated(argv, words):
    with pytest.raises(SystemExit) as exc:
        serve.parse_args(argv)
    assert words in str(exc.value.code)


def test_a_bad_catalog_spec_exits_with_a_message():
    with pytest.raises(SystemExit) as exc:
        serve.main(["--catalog", "no-such-catalog-dir", "--port", "0"])
    assert "--catalog 'no-such-catalog-dir': unknown catalog spec" in str(exc.value.code)
