#!/usr/bin/env python3
"""A fake Anthropic Messages API for running the real Claude Code CLI offline, in tests.

    fake-messages-api.py --port 8765 --log /tmp/requests.jsonl

Answers POST /v1/messages with streaming SSE (``"stream": true``) or plain JSON, and logs one JSON line per request
(what it carried, what was answered) to --log. The "model" is scripted by directives in the prompt, one per line:

    FAKE_BASH: <command>          a Bash tool call running <command>
    FAKE_WRITE: <path> <text>     a Write tool call writing <text> to <path>
    FAKE_READ: <path>             a Read tool call on <path>
    FAKE_READ_SAVED_OUTPUT        a Read tool call on the newest saved tool output (tool-results/*.txt) the
                                  conversation mentions: the file a resume elsewhere must still have
    FAKE_TASK: <prompt>           a subagent (the Task/Agent tool) given <prompt>
    FAKE_TOKENS: <n>              report <n> output tokens per answer (cost control in tests)

Directives run in order, one tool call per model turn; then it answers with text that quotes every tool result of
the turn (first 300 characters each, and whether the CLI flagged it an error), so a test reads from the job's result
what the tools really did. Without directives, it answers "fake answer N" where N counts the user prompts in the
conversation: a resumed session shows a larger N.
"""
import argparse
import json
import re
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
ARGS = None


def texts(content):
    if isinstance(content, str):
        return [content]
    out = []
    for block in content or []:
        if block.get("type") == "text":
            out.append(block.get("text", ""))
        elif block.get("type") == "tool_result":
            c = block.get("content")
            out.extend(texts(c) if isinstance(c, list) else [str(c or "")])
    return out


def is_prompt(message):
    """A user message that the user typed: not only tool results, not only the CLI's own reminders and notices."""
    if message.get("role") != "user":
        return False
    content = message.get("content")
    if isinstance(content, str):
        return not content.lstrip().startswith("<system-reminder>")
    blocks = content or []
    if any(b.get("type") == "tool_result" for b in blocks):
        return False
    return any(b.get("type") == "text" and not b.get("text", "").lstrip().startswith("<system-reminder>") for b in blocks)


def prompt_text(message):
    """The typed text of a prompt message, without the CLI's reminders."""
    return "\n".join(t for t in texts(message.get("content")) if not t.lstrip().startswith("<system-reminder>"))


def directives(text):
    found = []
    for line in text.splitlines():
        m = re.match(r"\s*(FAKE_[A-Z_]+)(?::\s?(.*))?$", line)
        if m:
            found.append((m.group(1), (m.group(2) or "").strip()))
    return found


def tool_call(kind, arg, tool_names, conversation_text):
    if kind == "FAKE_BASH":
        return "Bash", {"command": arg, "description": "fake model asked for it"}
    if kind == "FAKE_WRITE":
        path, _, content = arg.partition(" ")
        return "Write", {"file_path": path, "content": content + "\n"}
    if kind == "FAKE_READ":
        return "Read", {"file_path": arg}
    if kind == "FAKE_READ_SAVED_OUTPUT":
        paths = re.findall(r"(/[^\s\"'<>]*/tool-results/[^\s\"'<>]+?\.txt)", conversation_text)
        return "Read", {"file_path": paths[-1] if paths else "/nonexistent/tool-results/none.txt"}
    if kind == "FAKE_TASK":
        name = next((n for n in ("Agent", "Task") if n in tool_names), "Task")
        return name, {"description": "fake subagent", "prompt": arg, "subagent_type": "general-purpose", "run_in_background": False}
    return None


def answer(body):
    messages = body.get("messages") or []
    tool_names = [t.get("name") for t in body.get("tools") or []]
    conversation_text = "\n".join(t for m in messages for t in texts(m.get("content")))
    prompts = [i for i, m in enumerate(messages) if is_prompt(m)]
    last_prompt = prompts[-1] if prompts else 0
    steps = directives(prompt_text(messages[last_prompt])) if messages else []
    tokens = next((int(a) for k, a in steps if k == "FAKE_TOKENS" and a.isdigit()), 40)
    calls = [(k, a) for k, a in steps if k not in ("FAKE_TOKENS",)]
    done = sum(1 for m in messages[last_prompt + 1:] if m.get("role") == "assistant"
               and any(b.get("type") == "tool_use" for b in (m.get("content") if isinstance(m.get("content"), list) else [])))
    if tool_names and done < len(calls):
        made = tool_call(calls[done][0], calls[done][1], tool_names, conversation_text)
        if made:
            return [{"type": "tool_use", "id": "toolu_" + uuid.uuid4().hex[:24], "name": made[0], "input": made[1]}], "tool_use", tokens
    results = []
    for m in messages[last_prompt + 1:]:
        if m.get("role") == "user" and isinstance(m.get("content"), list):
            for b in m["content"]:
                if b.get("type") == "tool_result":
                    text = "\n".join(texts(b.get("content") if isinstance(b.get("content"), list) else [{"type": "text", "text": str(b.get("content") or "")}]))
                    results.append("[tool %s%s] %s" % (len(results) + 1, " error" if b.get("is_error") else "", text[:300]))
    reply = "fake answer %d" % len(prompts)
    if results:
        reply += "\n" + "\n".join(results)
    return [{"type": "text", "text": reply}], "end_turn", tokens


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def record(self, entry):
        if ARGS.log:
            with LOCK, open(ARGS.log, "a") as f:
                f.write(json.dumps(entry) + "\n")

    def do_GET(self):
        self.record({"method": "GET", "path": self.path})
        self.reply_json(404, {"type": "error", "error": {"type": "not_found_error", "message": "fake API: no such path"}})

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def reply_json(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        path = self.path.split("?")[0]
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {}
        if path.endswith("/count_tokens"):
            self.record({"method": "POST", "path": path})
            return self.reply_json(200, {"input_tokens": max(1, len(raw) // 4)})
        if not path.endswith("/v1/messages"):
            self.record({"method": "POST", "path": path})
            return self.reply_json(404, {"type": "error", "error": {"type": "not_found_error", "message": "fake API: no such path"}})
        content, stop, out_tokens = answer(body)
        model = body.get("model") or "claude-sonnet-4-5"
        usage = {"input_tokens": max(1, len(raw) // 40), "output_tokens": out_tokens,
                 "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        msg_id = "msg_" + uuid.uuid4().hex[:24]
        messages = body.get("messages") or [{}]
        prompts = [m for m in messages if is_prompt(m)]
        self.record({"method": "POST", "path": path, "model": model, "stream": bool(body.get("stream")),
                     "messages": len(messages), "tools": len(body.get("tools") or []),
                     "last": "\n".join(texts(messages[-1].get("content")))[:2000],
                     "prompt": prompt_text(prompts[-1])[-2000:] if prompts else "", "answered": content, "stop": stop,
                     "input_bytes": len(raw)})
        if not body.get("stream"):
            return self.reply_json(200, {"id": msg_id, "type": "message", "role": "assistant", "model": model,
                                         "content": content, "stop_reason": stop, "stop_sequence": None, "usage": usage})
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()

        def event(name, data):
            self.wfile.write(("event: %s\ndata: %s\n\n" % (name, json.dumps(data))).encode())

        event("message_start", {"type": "message_start", "message": {
            "id": msg_id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": dict(usage, output_tokens=1)}})
        for i, block in enumerate(content):
            if block["type"] == "text":
                event("content_block_start", {"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}})
                event("content_block_delta", {"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": block["text"]}})
            else:
                event("content_block_start", {"type": "content_block_start", "index": i,
                                              "content_block": {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}})
                event("content_block_delta", {"type": "content_block_delta", "index": i,
                                              "delta": {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}})
            event("content_block_stop", {"type": "content_block_stop", "index": i})
        event("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                                "usage": {"output_tokens": out_tokens}})
        event("message_stop", {"type": "message_stop"})
        self.wfile.flush()
        self.close_connection = True


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--log", default="")
    p.add_argument("--ready-file", default="", help="written once listening")
    ARGS = p.parse_args()
    server = ThreadingHTTPServer((ARGS.host, ARGS.port), Handler)
    server.daemon_threads = True
    if ARGS.ready_file:
        with open(ARGS.ready_file, "w") as f:
            f.write(str(server.server_address[1]))
    server.serve_forever()


if __name__ == "__main__":
    main()
