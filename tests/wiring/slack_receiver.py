"""A local stand-in for Slack's incoming webhook (unreachable from here): it records what is posted."""

from __future__ import annotations

import json


class SlackReceiver:
    """Slack's incoming webhook cannot be reached from here: this records what would be posted."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.posts: list[dict[str, object]] = []
        posts = self.posts

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                posts.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T/B/x"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def texts(self) -> list[str]:
        return [str(post["text"]) for post in self.posts]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
