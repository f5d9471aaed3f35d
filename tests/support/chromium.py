"""Open a page in Debian's headless `chromium` through the DevTools protocol: what it logged to the console,
the exceptions it threw, a JavaScript check evaluated once the page settled, and a full-page screenshot.

The protocol rather than `--screenshot` and a grep of `--enable-logging`: the log's format changes between
Chromium versions and does not say a console message's level, the protocol does. WebGL (plotly's
parallel coordinates) is software-rendered: `--enable-unsafe-swiftshader` opts in, as headless Chromium no
longer falls back to SwiftShader on its own (and says so on the console, which would count as a warning).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",  # tests run as root on CI; the sandbox refuses root
    "--disable-dev-shm-usage",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--no-first-run",
    "--window-size=1280,1000",
    "--remote-debugging-port=0",
)


@dataclass
class PageVisit:
    console: list[tuple[str, str]] = field(default_factory=list)
    """(level, text) of every console message and log entry."""
    exceptions: list[str] = field(default_factory=list)
    check: Any = None
    """The value of the JavaScript check, evaluated once it was truthy (or at the deadline)."""
    png: bytes | None = None

    @property
    def errors(self) -> list[str]:
        return self.exceptions + [text for level, text in self.console if level in ("error", "assert")]


def chromium_binary() -> str | None:
    return shutil.which("chromium")


def visit(url: str, check_js: str, screenshot: Path | None = None, timeout: float = 30.0) -> PageVisit:
    """Load `url`, wait until `check_js` evaluates truthy (or `timeout`), screenshot the whole page."""
    binary = chromium_binary()
    assert binary, "chromium is not installed (scripts/install-chromium.sh)"
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        process = subprocess.Popen(
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            endpoint = _devtools_endpoint(process, timeout)
            result = asyncio.run(asyncio.wait_for(_visit(endpoint, url, check_js, screenshot is not None), timeout))
            if screenshot is not None and result.png is not None:
                screenshot.write_bytes(result.png)
            return result
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stderr:
                process.stderr.close()


def _devtools_endpoint(process: subprocess.Popen[str], timeout: float) -> str:
    """`http://127.0.0.1:PORT` from Chromium's "DevTools listening on ws://..." line."""
    assert process.stderr is not None
    seen = []
    for line in process.stderr:
        seen.append(line)
        if match := re.search(r"DevTools listening on ws://([^/]+)/", line):
            return f"http://{match.group(1)}"
        if len(seen) > 500:
            break
    raise AssertionError("chromium did not open its DevTools port:\n" + "".join(seen[-30:]))


async def _visit(endpoint: str, url: str, check_js: str, screenshot: bool) -> PageVisit:
    result = PageVisit()
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{endpoint}/json/list") as response:
            targets = await response.json(content_type=None)
        page = next(t for t in targets if t.get("type") == "page")
        async with session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            pending: dict[int, asyncio.Future[Any]] = {}
            loaded = asyncio.Event()
            counter = iter(range(1, 1_000_000))

            async def reader() -> None:
                async for message in ws:
                    data = json.loads(message.data)
                    if "id" in data and data["id"] in pending:
                        pending.pop(data["id"]).set_result(data)
                    method, params = data.get("method"), data.get("params") or {}
                    if method == "Runtime.consoleAPICalled":
                        text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
                        result.console.append((params.get("type", ""), text))
                    elif method == "Runtime.exceptionThrown":
                        details = params.get("exceptionDetails") or {}
                        exception = details.get("exception") or {}
                        result.exceptions.append(str(exception.get("description") or details.get("text")))
                    elif method == "Log.entryAdded":
                        entry = params.get("entry") or {}
                        result.console.append((entry.get("level", ""), str(entry.get("text", ""))))
                    elif method == "Page.loadEventFired":
                        loaded.set()

            async def send(method: str, **params: Any) -> dict[str, Any]:
                number = next(counter)
                future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
                pending[number] = future
                await ws.send_json({"id": number, "method": method, "params": params})
                answer: dict[str, Any] = await future
                assert "error" not in answer, answer
                return answer.get("result") or {}

            task = asyncio.create_task(reader())
            try:
                for domain in ("Runtime", "Log", "Page"):
                    await send(f"{domain}.enable")
                await send("Page.navigate", url=url)
                await loaded.wait()
                for _ in range(100):
                    evaluated = await send("Runtime.evaluate", expression=check_js, returnByValue=True)
                    result.check = (evaluated.get("result") or {}).get("value")
                    if result.check:
                        break
                    await asyncio.sleep(0.1)
                await asyncio.sleep(0.3)  # late console messages of the last render
                if screenshot:
                    metrics = await send("Page.getLayoutMetrics")
                    size = metrics.get("cssContentSize") or metrics["contentSize"]
                    clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
                    shot = await send("Page.captureScreenshot", format="png", captureBeyondViewport=True, clip=clip)
                    result.png = base64.b64decode(shot["data"])
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    return result
