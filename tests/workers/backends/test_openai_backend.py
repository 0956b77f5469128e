"""The openai backend against a small OpenAI-compatible server listening on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from mcp.errors import UnknownAction
from mcp.settings import ModelSpec, Settings
from tests.workers.backends.conftest import make_context
from workers.backends import make_backend
from workers.backends.openai_backend import OpenAIBackend, UpstreamError

CHAT_REPLY = "Hello from the fake server, one word at a time."
PHONE_REPLY = (
    '<think>Settings is closed.</think><answer>do(action="Launch", app="Settings")</answer>'
)


@dataclass
class FakeServerState:
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    failures: list[int] = field(default_factory=list)  # statuses to answer before succeeding
    delays: dict[str, float] = field(default_factory=dict)  # prompt -> seconds before answering


def _reply_for(body: dict[str, Any]) -> str:
    system = next((m for m in body.get("messages", []) if m["role"] == "system"), None)
    return PHONE_REPLY if system and "Android" in system["content"] else CHAT_REPLY


def _vector(text: str) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [float(b) + 1.0 for b in digest[:8]]


class FakeOpenAIHandler(BaseHTTPRequestHandler):
    state: FakeServerState

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.state.requests.append((self.path, body))
        time.sleep(self.state.delays.get(str(body.get("prompt")), 0.0))
        if self.state.failures:
            status = self.state.failures.pop(0)
            self._json(status, {"error": {"message": "try later"}}, {"Retry-After": "0"})
            return
        if self.path == "/v1/embeddings":
            data = [
                {"index": i, "embedding": _vector(text)} for i, text in enumerate(body["input"])
            ]
            self._json(200, {"data": data, "usage": {"prompt_tokens": 3, "total_tokens": 3}})
        elif self.path in ("/v1/chat/completions", "/v1/completions"):
            chat = self.path.endswith("chat/completions")
            reply = _reply_for(body) if chat else " and so on."
            if body.get("stream"):
                self._stream(reply, chat)
            else:
                choice: dict[str, Any] = {"index": 0, "finish_reason": "stop"}
                choice.update(
                    {"message": {"role": "assistant", "content": reply}}
                    if chat
                    else {"text": reply}
                )
                usage = {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14}
                self._json(200, {"choices": [choice], "usage": usage})
        else:
            self._json(404, {"error": {"message": "no such route"}})

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, reply: str, chat: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        words = reply.split(" ")
        for i, word in enumerate(words):
            piece = word if i == 0 else " " + word
            part = {"delta": {"content": piece}} if chat else {"text": piece}
            self._event({"choices": [{"index": 0, **part, "finish_reason": None}]})
        self._event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        self._event(
            {
                "choices": [],
                "usage": {
                    "prompt_tokens": 5,
                    "completion_tokens": len(words),
                    "total_tokens": 5 + len(words),
                },
            }
        )
        self.wfile.write(b"data: [DONE]\n\n")

    def _event(self, payload: dict[str, Any]) -> None:
        self.wfile.write(b"data: " + json.dumps(payload).encode() + b"\n\n")
        self.wfile.flush()


@pytest.fixture
def fake_server() -> Iterator[tuple[str, FakeServerState]]:
    state = FakeServerState()
    handler = type("Handler", (FakeOpenAIHandler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", state
    server.shutdown()
    server.server_close()


def _backend(url: str) -> OpenAIBackend:
    spec = ModelSpec(
        name="phone-remote",
        backend="openai",
        url=url,
        served_model_name="autoglm-phone-9b",
        api_key="sk-test",
        actions=["generate", "embed", "phone_step"],
    )
    backend = make_backend(spec, Settings.model_validate({"dev_mode": True}))
    assert isinstance(backend, OpenAIBackend)
    backend.load()
    return backend


def _ok(result: Any) -> dict[str, Any]:
    assert not isinstance(result, BaseException), result
    return dict(result)


def test_generate_chat_and_prompt(fake_server: tuple[str, FakeServerState]) -> None:
    url, state = fake_server
    backend = _backend(url)
    chat = make_context(
        "m", "generate", {"messages": [{"role": "user", "content": "hi"}], "stream": False}
    )
    prompt = make_context(
        "m", "generate", {"prompt": "Once upon a time", "stop": ["\n"], "seed": 3}
    )
    first, second = (_ok(r) for r in backend.run_batch("generate", [chat, prompt]))
    assert first["text"] == CHAT_REPLY and first["usage"]["total_tokens"] == 14
    assert second["text"] == " and so on." and second["finish_reason"] == "stop"
    paths = sorted(path for path, _ in state.requests)
    assert paths == ["/v1/chat/completions", "/v1/completions"]
    completion = next(body for path, body in state.requests if path == "/v1/completions")
    assert completion["model"] == "autoglm-phone-9b"
    assert completion["stop"] == ["\n"] and completion["seed"] == 3


def test_members_are_reported_as_each_answer_completes(
    fake_server: tuple[str, FakeServerState],
) -> None:
    url, state = fake_server
    state.delays["slow"] = 1.5
    batch = [
        make_context("m", "generate", {"prompt": prompt, "stream": False})
        for prompt in ("slow", "quick", "quicker")
    ]
    started = time.monotonic()
    seen: list[tuple[int, float]] = []
    _backend(url).run_streaming(
        "generate", batch, lambda i, r: seen.append((i, time.monotonic() - started))
    )
    assert sorted(i for i, _ in seen[:2]) == [1, 2] and seen[2][0] == 0
    assert all(at < 1.0 for _, at in seen[:2]), seen


def test_streaming_forwards_deltas(fake_server: tuple[str, FakeServerState]) -> None:
    url, state = fake_server
    deltas: list[str] = []
    payload = {"messages": [{"role": "user", "content": "hi"}]}
    task = make_context("m", "generate", payload, on_token=deltas.append)
    result = _ok(_backend(url).run_batch("generate", [task])[0])
    assert len(deltas) == len(CHAT_REPLY.split(" "))
    assert "".join(deltas) == result["text"] == CHAT_REPLY
    assert result["usage"]["completion_tokens"] == len(deltas)
    assert state.requests[0][1]["stream"] is True


def test_phone_step_sends_the_screenshot_and_parses_the_answer(
    fake_server: tuple[str, FakeServerState],
) -> None:
    url, state = fake_server
    payload = {"instruction": "Open settings", "screenshot": "iVBORw0KGgo="}
    result = _ok(
        _backend(url).run_batch("phone_step", [make_context("m", "phone_step", payload)])[0]
    )
    assert result["action"] == "Launch" and result["args"] == {"app": "Settings"}
    assert result["thinking"] == "Settings is closed."
    content = state.requests[0][1]["messages"][-1]["content"]
    assert content[0] == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="},
    }


def test_embed_is_one_request_for_the_batch(fake_server: tuple[str, FakeServerState]) -> None:
    url, state = fake_server
    batch = [
        make_context("m", "embed", {"input": ["a", "b"]}),
        make_context("m", "embed", {"input": "c"}),
    ]
    first, second = (_ok(r) for r in _backend(url).run_batch("embed", batch))
    assert len(first["embeddings"]) == 2 and len(second["embeddings"]) == 1
    assert first["dim"] == 8
    assert sum(x * x for x in second["embeddings"][0]) == pytest.approx(1.0)
    assert [path for path, _ in state.requests] == ["/v1/embeddings"]
    assert state.requests[0][1]["input"] == ["a", "b", "c"]


@pytest.mark.parametrize("status", [503, 429, 500])
def test_retries_transient_failures(fake_server: tuple[str, FakeServerState], status: int) -> None:
    url, state = fake_server
    state.failures.extend([status, status])
    deltas: list[str] = []
    payload = {"messages": [{"role": "user", "content": "hi"}]}
    task = make_context("m", "generate", payload, on_token=deltas.append)
    result = _ok(_backend(url).run_batch("generate", [task])[0])
    assert result["text"] == CHAT_REPLY == "".join(deltas)
    assert len(state.requests) == 3


def test_client_errors_are_not_retried(fake_server: tuple[str, FakeServerState]) -> None:
    url, state = fake_server
    state.failures.append(400)
    task = make_context("m", "generate", {"prompt": "hi", "stream": False})
    result = _backend(url).run_batch("generate", [task])[0]
    assert isinstance(result, UpstreamError) and result.details["status"] == 400
    assert getattr(result, "permanent", False)
    assert len(state.requests) == 1


def test_unreachable_server_fails_after_bounded_retries() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    task = make_context("m", "generate", {"prompt": "hi"})
    result = _backend(f"http://127.0.0.1:{port}/v1").run_batch("generate", [task])[0]
    assert isinstance(result, UpstreamError) and "attempt 4" in str(result)


def test_classify_is_not_offered(fake_server: tuple[str, FakeServerState]) -> None:
    url, _ = fake_server
    task = make_context("m", "classify", {"input": "x", "labels": ["a", "b"]})
    assert isinstance(_backend(url).run_batch("classify", [task])[0], UnknownAction)
