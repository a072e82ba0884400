"""HTTP service for a trained checkpoint (issue 14), on aiohttp (the ``serve`` extra).

    python -m recbole_mixrec.serve --checkpoint saved/<file>.pth --port 8000

``POST /recommend`` with ``{"user": "196"}`` or ``{"history": ["50", "Fargo"], "k": 10}``
(optional ``"exclude_history": false``; ``user`` and ``history`` together: that known user's CF
vector with this history) answers ``{"model", "user", "k", "items": [{"rank", "item", "title",
"score"}]}``; ``GET /health`` answers ``{"status": "ok", "model", "dataset", "n_users",
"n_items"}``. Bad input gets a 4xx and ``{"error": "<one line>"}``: 400 malformed JSON, wrong
types, unknown fields, empty history, ``k`` out of range; 404 unknown user; 422 unknown items
(named) or an ambiguous title (its items named); 413 a body over ``--max-body`` bytes. An
unexpected failure is a 500 with a one-line reason; tracebacks go to the server's log only.

The model is loaded once. Requests are checked on the event loop and queued; one worker
thread scores whatever is queued (up to ``--max-batch`` requests) in one forward pass, so
concurrent requests share a pass while a single request is not delayed by a timer.
"""

import argparse
import asyncio
import json
import logging
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict

from aiohttp import web

from recbole_mixrec.errors import MixRecError
from recbole_mixrec.recommend import Recommender, RecommendError

logger = logging.getLogger("recbole_mixrec.serve")

REQUEST_FIELDS = {"user", "history", "k", "exclude_history"}
RECOMMENDER = web.AppKey("recommender", Recommender)
BATCHER = web.AppKey("batcher", object)
MAX_BODY = web.AppKey("max_body", int)


def error(status, message):
    """A JSON error answer; the reason is one line."""
    return web.json_response({"error": " ".join(str(message).split())}, status=status)


class Batcher:
    """Queue of resolved queries; one worker thread scores each queued group in one pass."""

    def __init__(self, recommender, max_batch=32):
        self.recommender = recommender
        self.max_batch = max_batch
        self.queue = None
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="recommend")
        self.task = None
        self.batch_sizes = []  # sizes of the passes run (kept short; for tests and benchmarks)

    async def start(self, app=None):
        self.queue = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self._work())

    async def stop(self, app=None):
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
        self.executor.shutdown(wait=True)

    async def submit(self, query):
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((query, future))
        return await future

    async def _work(self):
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            while len(batch) < self.max_batch and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            batch = [(q, f) for q, f in batch if not f.cancelled()]  # client went away
            if not batch:
                continue
            self.batch_sizes = (self.batch_sizes + [len(batch)])[-1000:]
            try:
                results = await loop.run_in_executor(self.executor, self.recommender.answer, [q for q, _ in batch])
            except Exception as err:  # noqa: BLE001  every waiting request gets the failure
                logger.exception("scoring failed")
                results = [err] * len(batch)
            for (_, future), result in zip(batch, results):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)


def parse_request(body, recommender):
    """Body bytes -> ``Query``; raises ``RecommendError`` with a one-line reason."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RecommendError(f"malformed JSON: {err}") from None
    if not isinstance(payload, dict):
        raise RecommendError(f"the body must be a JSON object, not {type(payload).__name__}")
    unknown = sorted(set(payload) - REQUEST_FIELDS)
    if unknown:
        raise RecommendError(f"unknown field(s) {unknown}; allowed: {sorted(REQUEST_FIELDS)}")
    return recommender.resolve(
        payload.get("user"), payload.get("history"), payload.get("k", 10),
        payload.get("exclude_history", True),
    )


async def recommend(request):
    recommender = request.app[RECOMMENDER]
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return error(413, f"request body over {request.app[MAX_BODY]} bytes")
    try:
        query = parse_request(body, recommender)
    except RecommendError as err:
        return error(err.status, err)
    try:
        items = await request.app[BATCHER].submit(query)
    except Exception:  # noqa: BLE001  logged by the batcher; the client gets one line
        return error(500, "internal error while scoring (see the server log)")
    user = None if query.user is None else recommender.user_tokens[query.user]
    return web.json_response({
        "model": recommender.model_name, "user": user, "k": query.k,
        "items": [asdict(item) for item in items],
    })


async def health(request):
    recommender = request.app[RECOMMENDER]
    return web.json_response({
        "status": "ok", "model": recommender.model_name, "dataset": recommender.dataset_name,
        "n_users": len(recommender.histories), "n_items": recommender.n_real_items,
    })


@web.middleware
async def json_errors(request, handler):
    """Every failure as ``{"error": ...}`` with one line: aiohttp's own 404/405, anything else."""
    try:
        return await handler(request)
    except web.HTTPException as err:
        if err.status < 400:
            raise
        return error(err.status, err.reason if err.text is None else err.text)
    except Exception:  # noqa: BLE001
        logger.exception("request failed")
        return error(500, "internal error (see the server log)")


def make_app(recommender, max_batch=32, max_body=64 * 1024):
    app = web.Application(client_max_size=max_body, middlewares=[json_errors])
    app[MAX_BODY] = max_body
    app[RECOMMENDER] = recommender
    batcher = Batcher(recommender, max_batch)
    app[BATCHER] = batcher
    app.on_startup.append(batcher.start)
    app.on_cleanup.append(batcher.stop)
    app.router.add_post("/recommend", recommend)
    app.router.add_get("/health", health)
    return app


class BackgroundServer:
    """The service on ``host:port`` (port 0: a free one) in a thread of this process, for
    tests and notebooks: ``with BackgroundServer(recommender) as server: server.url``."""

    def __init__(self, recommender, host="127.0.0.1", port=0, **app_args):
        self.app = make_app(recommender, **app_args)
        self.host, self.port = host, port
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner = None

    def __enter__(self):
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=60)
        return self

    async def _start(self):
        self.runner = web.AppRunner(self.app, handle_signals=False, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    @property
    def url(self):
        return f"http://{self.host}:{self.port}"

    def __exit__(self, *exc):
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(timeout=60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m recbole_mixrec.serve", description="Serve top-k recommendations of a checkpoint over HTTP."
    )
    parser.add_argument("--checkpoint", required=True, help="a saved/<model>-<date>.pth file")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-batch", type=int, default=32, help="most queued requests scored in one pass")
    parser.add_argument("--max-body", type=int, default=64 * 1024, help="largest request body in bytes")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        recommender = Recommender(args.checkpoint, args.device, quiet=True)
    except MixRecError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO)
    print(f"serving {recommender.model_name} on {recommender.dataset_name} at http://{args.host}:{args.port}",
          flush=True)
    web.run_app(make_app(recommender, args.max_batch, args.max_body), host=args.host, port=args.port,
                print=None, access_log=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
