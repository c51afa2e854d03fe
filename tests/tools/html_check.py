#!/usr/bin/env python3
"""html_check.py CHROMIUM PAGE.html SCREENSHOT.png [--expect-svgs N]

Opens PAGE in headless Chromium through the DevTools protocol (over
--remote-debugging-pipe, no network, no extra packages) and checks:
  - no console message of level error or warning, no uncaught exception, no
    failed resource load (Runtime.consoleAPICalled, Runtime.exceptionThrown,
    Log.entryAdded);
  - every <svg> has drawn data marks: a polyline with points, a circle, or
    a rect other than its background (the first rect);
  - (--expect-svgs N) there are exactly N SVGs;
  - a full-page screenshot, written to SCREENSHOT, is not blank: decoded
    here (zlib + PNG filters), at least 1% of its pixels are not white and
    it has at least 8 distinct colours.
Prints one line per problem; exit 1 on any, 0 when all hold."""
import base64, json, os, struct, subprocess, sys, tempfile, zlib


def png_pixels(data):
    """(width, height, rows of RGB(A) tuples) of an 8-bit RGB/RGBA PNG."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat, w = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
            if depth != 8 or ctype not in (2, 6):
                raise ValueError("PNG depth %d colour type %d not handled" % (depth, ctype))
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    stride = w * bpp
    rows, prev, i = [], bytearray(stride), 0
    for _ in range(h):
        f, line = raw[i], bytearray(raw[i + 1:i + 1 + stride])
        i += 1 + stride
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if f == 1: line[x] = (line[x] + a) & 255
            elif f == 2: line[x] = (line[x] + b) & 255
            elif f == 3: line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return w, h, bpp, rows


class Pipe:
    def __init__(self, chromium, profile):
        to_r, self.to_w = os.pipe()
        self.from_r, from_w = os.pipe()
        # Chromium reads commands on fd 3 and writes replies on fd 4.
        def fds():     # (via fresh copies: a pipe may already be fd 3 or 4, close-on-exec)
            a, b = os.dup(to_r), os.dup(from_w)
            os.dup2(a, 3)
            os.dup2(b, 4)
        self.p = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--remote-debugging-pipe", "--user-data-dir=" + profile, "--hide-scrollbars",
             "about:blank"], preexec_fn=fds, close_fds=False,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_r)
        os.close(from_w)
        self.buf, self.id, self.events = b"", 0, []

    def send(self, method, params=None, session=None):
        self.id += 1
        msg = {"id": self.id, "method": method, "params": params or {}}
        if session: msg["sessionId"] = session
        os.write(self.to_w, json.dumps(msg).encode() + b"\0")
        want = self.id
        while True:
            m = self.read()
            if m.get("id") == want:
                if "error" in m: raise RuntimeError("%s: %s" % (method, m["error"]))
                return m.get("result", {})
            self.events.append(m)

    def read(self):
        while b"\0" not in self.buf:
            chunk = os.read(self.from_r, 1 << 20)
            if not chunk: raise RuntimeError("chromium closed the pipe")
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def wait_event(self, name, limit=2000):
        for e in self.events:
            if e.get("method") == name: return e
        for _ in range(limit):
            m = self.read()
            self.events.append(m)
            if m.get("method") == name: return m
        raise RuntimeError("no %s event" % name)


DRAWN_JS = """(() => Array.from(document.querySelectorAll('svg')).map(s => {
  const rects = s.querySelectorAll('rect').length;
  const lines = Array.from(s.querySelectorAll('polyline')).filter(p => (p.getAttribute('points')||'').trim().split(/\\s+/).length >= 2).length;
  const circles = s.querySelectorAll('circle').length;
  const box = s.getBoundingClientRect();
  return {marks: Math.max(0, rects - 1) + lines + circles, w: box.width, h: box.height};
}))()"""


def main():
    chromium, page, shot = sys.argv[1:4]
    expect = int(sys.argv[sys.argv.index("--expect-svgs") + 1]) if "--expect-svgs" in sys.argv else None
    problems = []
    with tempfile.TemporaryDirectory() as profile:
        c = Pipe(chromium, profile)
        try:
            tid = c.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            sid = c.send("Target.attachToTarget", {"targetId": tid, "flatten": True})["sessionId"]
            for dom in ("Page", "Runtime", "Log"):
                c.send(dom + ".enable", session=sid)
            c.send("Page.navigate", {"url": "file://" + os.path.abspath(page)}, session=sid)
            c.wait_event("Page.loadEventFired")
            svgs = c.send("Runtime.evaluate", {"expression": DRAWN_JS, "returnByValue": True},
                          session=sid)["result"]["value"]
            dims = c.send("Runtime.evaluate", {"expression": "[document.documentElement.scrollWidth, document.documentElement.scrollHeight]",
                                               "returnByValue": True}, session=sid)["result"]["value"]
            c.send("Emulation.setDeviceMetricsOverride", {"width": max(1200, dims[0]), "height": min(8000, dims[1]),
                                                          "deviceScaleFactor": 1, "mobile": False}, session=sid)
            png = base64.b64decode(c.send("Page.captureScreenshot", {"format": "png"}, session=sid)["data"])
            # the blank check decodes a quarter-scale copy (pure-Python PNG decoding)
            small = base64.b64decode(c.send("Page.captureScreenshot", {"format": "png", "clip": {
                "x": 0, "y": 0, "width": max(1200, dims[0]), "height": min(8000, dims[1]), "scale": 0.25}},
                session=sid)["data"])
            for e in c.events:
                m, p = e.get("method"), e.get("params", {})
                if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "warning", "assert"):
                    problems.append("console %s: %s" % (p["type"], " ".join(str(a.get("value", a.get("description"))) for a in p.get("args", []))))
                elif m == "Runtime.exceptionThrown":
                    problems.append("exception: %s" % p.get("exceptionDetails", {}).get("text"))
                elif m == "Log.entryAdded" and p.get("entry", {}).get("level") in ("error", "warning"):
                    problems.append("log %s: %s" % (p["entry"]["level"], p["entry"].get("text")))
            try:
                c.send("Browser.close")
            except RuntimeError:
                pass
        finally:
            try:
                c.p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                c.p.kill()
                c.p.wait()
    with open(shot, "wb") as f:
        f.write(png)
    if expect is not None and len(svgs) != expect:
        problems.append("%d SVGs on the page, expected %d" % (len(svgs), expect))
    if not svgs and expect != 0:
        problems.append("no SVG on the page")
    for i, s in enumerate(svgs):
        if s["marks"] < 1: problems.append("SVG %d has no drawn data marks" % (i + 1))
        if s["w"] < 10 or s["h"] < 10: problems.append("SVG %d is %gx%g pixels" % (i + 1, s["w"], s["h"]))
    w, h, bpp, rows = png_pixels(small)
    white, colours = 0, set()
    for r in rows:
        for x in range(0, w * bpp, bpp):
            px = r[x:x + 3]
            if px == b"\xff\xff\xff": white += 1
            if len(colours) < 64: colours.add(px)
    if (w * h - white) < 0.01 * w * h or len(colours) < 8:
        problems.append("screenshot %dx%d looks blank: %.2f%% non-white pixels, %d colours"
                        % (w, h, 100.0 * (w * h - white) / (w * h), len(colours)))
    for p in problems: print(p)
    print("checked %s: %d SVGs, screenshot %s, %d problems" % (page, len(svgs), shot, len(problems)))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
