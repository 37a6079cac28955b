"""Looking at a page in headless Chromium, offline: what it drew, and a screenshot.

Used by the tests (the HTML report and dask's performance report must draw their plots
without a network) and by ``scripts/screenshots.py`` (the README's pictures). Chromium is
started with ``--remote-debugging-port=0`` and driven over the DevTools protocol (tornado's
websocket client, already installed with distributed): Bokeh draws into canvases inside
shadow roots, which ``--dump-dom`` does not show, so the page is asked directly. Host names
other than the loopback do not resolve, so a page that needs a CDN stays blank here as it
would on a compute node.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request

__all__ = ["DRAWN", "FLAGS", "PROBE", "find_chromium", "render"]

#: the flags of every run (besides the profile directory and the debugging port)
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--no-first-run", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, "
         "EXCLUDE 127.0.0.1")

#: JavaScript: canvases (also in shadow roots), those with a drawing (more than two colours),
#: table rows of files, and the page's text
PROBE = """(() => {
  const canvases = [];
  const walk = (root) => { for (const el of root.querySelectorAll('*')) {
      if (el.tagName === 'CANVAS') canvases.push(el);
      if (el.shadowRoot) walk(el.shadowRoot); } };
  walk(document);
  let drawn = 0;
  for (const c of canvases) {
    if (!c.width || !c.height) continue;
    const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    const colours = new Set();
    for (let i = 0; i < px.length && colours.size < 3; i += 4 * 7)
      colours.add((px[i] << 24) ^ (px[i + 1] << 16) ^ (px[i + 2] << 8) ^ px[i + 3]);
    if (colours.size > 2) drawn += 1;
  }
  return {canvases: canvases.length, drawn: drawn,
          file_rows: document.querySelectorAll('tr.file-row').length,
          text: document.body ? document.body.innerText : ''};
})()"""

#: JavaScript: how many canvases hold a drawing (for ``until``)
DRAWN = f"({PROBE}).drawn"


def find_chromium() -> str | None:
    """The Chromium executable on PATH (Debian's ``chromium`` first), or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _port(profile: str, proc: subprocess.Popen, deadline: float) -> int:
    marker = os.path.join(profile, "DevToolsActivePort")
    while time.monotonic() < deadline:
        if os.path.exists(marker):
            with open(marker, encoding="ascii") as fh:
                first = fh.readline().strip()
            if first.isdigit():
                return int(first)
        if proc.poll() is not None:
            raise RuntimeError(f"chromium exited with status {proc.returncode}")
        time.sleep(0.05)
    raise TimeoutError("chromium did not open its debugging port")


def _page_socket(port: int, deadline: float) -> str:
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as resp:
            pages = [t for t in json.load(resp) if t.get("type") == "page"]
        if pages:
            return pages[0]["webSocketDebuggerUrl"]
        time.sleep(0.05)
    raise TimeoutError("chromium opened no page")


async def _drive(ws_url: str, until: str, screenshot: str | None, full_page: bool,
                 deadline: float) -> dict:
    from tornado.websocket import websocket_connect
    conn = await websocket_connect(ws_url, max_message_size=256 * 1024**2)
    counter = 0

    async def call(method: str, **params) -> dict:
        nonlocal counter
        counter += 1
        await conn.write_message(json.dumps({"id": counter, "method": method, "params": params}))
        while True:
            msg = json.loads(await asyncio.wait_for(
                conn.read_message(), max(10.0, deadline - time.monotonic())))
            if msg.get("id") == counter:
                if "error" in msg:
                    raise RuntimeError(f"chromium: {method}: {msg['error']}")
                return msg["result"]

    async def evaluate(expression: str):
        res = await call("Runtime.evaluate", expression=expression, returnByValue=True)
        return res.get("result", {}).get("value")

    try:
        ready = False
        while time.monotonic() < deadline:
            if await evaluate(f"document.readyState === 'complete' && Boolean({until})"):
                ready = True
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.5)  # let the last frame draw
        result = await evaluate(PROBE) or {}
        result["ready"] = ready
        if screenshot:
            shot = await call("Page.captureScreenshot", format="png",
                              captureBeyondViewport=full_page)
            with open(screenshot, "wb") as fh:
                fh.write(base64.b64decode(shot["data"]))
        return result
    finally:
        conn.close()


def render(url: str, *, until: str = "true", screenshot: str | None = None,
           full_page: bool = True, width: int = 1200, height: int = 1400,
           timeout: float = 60.0, executable: str | None = None) -> dict:
    """Open ``url`` in headless Chromium; return what :data:`PROBE` finds once ``until`` (a
    JavaScript expression) holds, or ``timeout`` seconds passed (then ``ready`` is False).

    ``screenshot``: also write a PNG of the page there (the whole page, or with
    ``full_page`` False what a ``width`` x ``height`` window shows).
    """
    exe = executable or find_chromium()
    if exe is None:
        raise FileNotFoundError("chromium is not installed (Debian: apt-get install chromium)")
    deadline = time.monotonic() + timeout
    # Chromium's helper processes (its own session: ended with it) may still write to the
    # profile while it is removed; what they leave behind is not worth a failed render
    with tempfile.TemporaryDirectory(prefix="dcbulk-chromium-",
                                     ignore_cleanup_errors=True) as profile:
        proc = subprocess.Popen([exe, *FLAGS, f"--user-data-dir={profile}",
                                 "--remote-debugging-port=0", f"--window-size={width},{height}",
                                 url], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True,
                                env={**os.environ, "TMPDIR": profile})  # its temp files
        try:
            ws_url = _page_socket(_port(profile, proc, deadline), deadline)
            return asyncio.run(_drive(ws_url, until, screenshot, full_page, deadline))
        finally:
            _end_group(proc)


def _end_group(proc: subprocess.Popen) -> None:
    """End Chromium and every process of its session (SIGTERM, then SIGKILL after 10 s)."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue
