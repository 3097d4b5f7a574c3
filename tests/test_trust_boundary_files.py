"""Files across the trust boundary: only uploads of this page (and the app's examples) get in.

`services.boundary.check_files` (unit tests first) and `demos.widgets.guard`, which runs it on every
event's raw inputs before Gradio moves, copies, downloads or decodes a file. The server tests send
what a hostile client can send (raw queue payloads), and check what must not happen: a server file
opened, told apart from a missing one, copied into the run log or sent to the vendor; a `data:`
image decoded; a URL fetched; an image over the app's limits passed on.
"""

from __future__ import annotations

import asyncio
import base64
import http.server
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap
import threading
import uuid
import zlib
from pathlib import Path
from typing import ClassVar

import gradio as gr
import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from adapters import inputs, registry
from adapters.errors import BadInput
from demos.widgets import examples
from services import boundary, run_log
from services.boundary import NOT_AN_UPLOAD
from tests.fakes import providers as fake

REPO = Path(__file__).resolve().parent.parent
e2e = pytest.mark.e2e


# --- images made byte by byte: a bomb is a few KB on disk and never exists decoded here ------------


def png(width: int, height: int, mode: str = "1", noise: bool = False) -> bytes:
    """A PNG of one colour (`noise=False`: compresses to almost nothing) or of random pixels
    (stored uncompressed, so the file is as big as its pixels), in mode "1" or "RGB"."""
    depth, colour_type, row_bytes = {"1": (1, 0, (width + 7) // 8), "RGB": (8, 2, width * 3)}[mode]
    z = zlib.compressobj(0 if noise else 9)
    if noise:
        data = os.urandom(row_bytes * height)
        idat = b"".join(z.compress(b"\0" + data[y * row_bytes : (y + 1) * row_bytes]) for y in range(height))
    else:
        row = bytes(row_bytes + 1)  # filter byte 0, then black pixels
        full, rest = divmod(height, 64)
        block = row * 64
        idat = b"".join(z.compress(block) for _ in range(full)) + z.compress(row * rest)
    idat += z.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def test_the_png_maker_makes_what_pillow_reads():
    for args, size, mode in (((301, 200), (301, 200), "1"), ((30, 20, "RGB", True), (30, 20), "RGB")):
        img = Image.open(io.BytesIO(png(*args)))
        img.load()
        assert (img.size, img.mode) == (size, mode)


# --- check_files on its own ----------------------------------------------------------------------


@pytest.fixture
def roots(tmp_path):
    """(an upload folder holding one upload, a file outside it)."""
    upload_root = tmp_path / "uploads"
    (upload_root / "abc123").mkdir(parents=True)
    upload = upload_root / "abc123" / "photo.png"
    upload.write_bytes(png(4, 4))
    outside = tmp_path / "secret.png"
    outside.write_bytes(png(4, 4))
    return upload_root, upload, outside


def refused(values, roots_, file_inputs=()) -> bool:
    try:
        boundary.check_files(values, roots_, file_inputs)
    except BadInput as err:
        assert str(err) == NOT_AN_UPLOAD
        return True
    return False


def test_an_upload_inside_the_roots_is_accepted_at_any_depth(roots):
    root, upload, _ = roots
    ref = {"path": str(upload), "meta": {"_type": "gradio.FileData"}}
    assert not refused([ref, "a prompt", None], [root], file_inputs=[0])
    assert not refused([[{"files": [ref, dict(ref)]}]], [root])
    assert not refused([None, {"value": "no file here"}], [root], file_inputs=[0])
    assert not refused(["/etc/passwd"], [root])  # a text input may hold any text: only file inputs are refused


def test_a_file_outside_the_roots_is_refused_whether_or_not_it_exists(roots, tmp_path):
    root, _, outside = roots
    for path in (outside, tmp_path / "missing.png", "/proc/self/environ", root / "abc123" / "missing.png"):
        assert refused([{"path": str(path)}], [root])
        assert refused([{"path": str(path), "meta": {"_type": "gradio.FileData"}}], [root])


def test_dot_dot_and_symlinks_out_of_the_roots_are_refused(roots):
    root, upload, outside = roots
    assert refused([{"path": f"{root}/abc123/../../{outside.name}"}], [root])
    assert not refused([{"path": f"{root}/abc123/../abc123/photo.png"}], [root])  # `..` that stays inside is fine
    (root / "abc123" / "link.png").symlink_to(outside)
    assert refused([{"path": str(root / "abc123" / "link.png")}], [root])
    (root / "abc123" / "inner.png").symlink_to(upload)
    assert not refused([{"path": str(root / "abc123" / "inner.png")}], [root])
    linked_root = root.parent / "linked-uploads"
    linked_root.symlink_to(root)  # a root named through a link still holds its own files, and only them
    assert not refused([{"path": str(upload)}], [linked_root])
    assert refused([{"path": str(outside)}], [linked_root])


def test_one_bad_reference_anywhere_refuses_the_event(roots):
    root, upload, outside = roots
    good, bad = {"path": str(upload)}, {"path": str(outside)}
    assert refused([[good, good, bad]], [root])
    assert refused(["text", {"value": {"history": [{"content": [good, {"file": bad}]}]}}], [root])
    assert refused([({"nested": [[{"deeper": bad}]]},)], [root])


@pytest.mark.parametrize(
    "ref",
    [
        {"path": "PATH", "url": "data:image/png;base64,AAAA"},  # an upload's path does not excuse a data: URL
        {"path": None, "url": "DATA:image/png;base64,AAAA"},
        {"url": "data:image/png;base64,AAAA"},
        {"path": "data:image/png;base64,AAAA"},
        {"path": "http://127.0.0.1:9/x.png"},
        {"path": None, "url": "http://127.0.0.1:9/x.png"},
        {"path": "file:///etc/passwd"},
        {"path": "PATH\0.png"},
        {"path": ["PATH"]},
        {"path": {"path": "PATH"}},
        {"path": "ROOT"},  # the folder itself, or a folder in it, is not an upload
        {"path": "ROOT/abc123"},
    ],
)
def test_urls_data_and_odd_paths_are_refused(roots, ref):
    root, upload, _ = roots

    def fill(v):
        if isinstance(v, str):
            return v.replace("PATH", str(upload)).replace("ROOT", str(root))
        if isinstance(v, list):
            return [fill(x) for x in v]
        if isinstance(v, dict):
            return {k: fill(x) for k, x in v.items()}
        return v

    assert refused([fill(ref)], [root])


def test_a_url_is_refused_even_where_it_also_names_a_file_in_the_roots(roots, monkeypatch):
    """Gradio fetches a path that looks like a URL; relative to a working folder inside the roots,
    the same text names a file there, which must not make it an upload."""
    root, _, _ = roots
    monkeypatch.chdir(root)
    for url in ("http://127.0.0.1:9/x.png", "https://example.com/x.png"):
        (root / url.replace("://", ":/")).parent.mkdir(parents=True, exist_ok=True)
        (root / url.replace("://", ":/")).write_bytes(png(4, 4))
        assert Path(url).resolve().is_file()  # pathlib reads it as a relative path to that file
        assert refused([{"path": url}], [root])


@pytest.mark.parametrize("value", ["data:image/png;base64,AAAA", "/etc/passwd", "http://127.0.0.1:9/x.png", "", 7])
def test_a_bare_value_for_a_file_input_is_refused(roots, value):
    root, upload, _ = roots
    assert refused([value], [root], file_inputs=[0])
    assert refused(["prompt", value], [root], file_inputs=[1])
    assert not refused([value, {"path": str(upload)}], [root], file_inputs=[1])


# --- through the real server ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def server():
    registry.register(fake.provider())
    import app

    app.demo.launch(
        prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True, **app.launch_options()
    )
    try:
        yield app.demo
    finally:
        app.demo.close()
        registry.unregister(fake.NAME)


@pytest.fixture
def vendor_calls(monkeypatch):
    """Every image the fake vendor is handed, as (task, width, height)."""
    calls = []

    def caption(self, image, prompt):
        calls.append(("caption", *image.size))
        return original_caption(self, image, prompt)

    def classify(self, image, labels):
        calls.append(("classify", *image.size))
        return original_classify(self, image, labels)

    original_caption, original_classify = fake.FakeCaptioner._caption, fake.FakeClassifier._classify
    monkeypatch.setattr(fake.FakeCaptioner, "_caption", caption)
    monkeypatch.setattr(fake.FakeClassifier, "_classify", classify)
    return calls


def logged() -> tuple[list[dict], list[Path]]:
    """(the run log's rows, the files in its uploads/ folder) of this test's run log."""
    run_log.flush(5)
    uploads = Path(os.environ[run_log.ENV]).parent / "uploads"
    return run_log.query(limit=None), sorted(uploads.rglob("*")) if uploads.exists() else []


def fn_index(demo, api_name: str) -> int:
    return next(i for i, fn in demo.fns.items() if fn.api_name == api_name)


def image_position(demo, api_name: str) -> int:
    from demos.widgets.image_upload import ImageUpload

    return next(i for i, b in enumerate(demo.fns[fn_index(demo, api_name)].inputs) if isinstance(b, ImageUpload))


def payload(demo, api_name: str, image) -> list:
    """The event's inputs as the page would send them, with `image` where the image goes."""
    if api_name == "caption":
        return [image, "", "fake", ""]
    if api_name == "classify":
        return [image, "a cat, a dog", "fake", ""]
    data = [None] * len(demo.fns[fn_index(demo, api_name)].inputs)  # refused before any other value is read
    data[image_position(demo, api_name)] = image
    return data


def raw_call(demo, api_name: str, image) -> dict:
    """Join the queue as the page does, with any JSON for the image; the final message."""
    session = uuid.uuid4().hex
    body = {
        "data": payload(demo, api_name, image),
        "fn_index": fn_index(demo, api_name),
        "session_hash": session,
        "event_data": None,
        "trigger_id": None,
    }
    with httpx.Client(base_url=demo.local_url, timeout=60) as http:
        http.post("gradio_api/queue/join", json=body).raise_for_status()
        with http.stream("GET", "gradio_api/queue/data", params={"session_hash": session}) as response:
            for line in response.iter_lines():
                if line.startswith("data:") and "process_completed" in line:
                    return json.loads(line[len("data:") :])
    raise AssertionError("the event never completed")


def error_of(demo, api_name: str, image) -> str | None:
    """The message the page shows for this event (None if it succeeded or failed without one)."""
    done = raw_call(demo, api_name, image)
    return None if done["success"] else (done.get("output") or {}).get("error")


def meta(path) -> dict:
    return {"path": str(path), "meta": {"_type": "gradio.FileData"}, "orig_name": "photo.png"}


@pytest.fixture
def server_files(tmp_path) -> dict[str, str]:
    """Files on the server a visitor never uploaded: a real image, a secret, and one that is missing."""
    image = tmp_path / "private.png"
    Image.new("RGB", (30, 20), "red").save(image)
    secret = tmp_path / "secret.txt"
    secret.write_text("OPENAI_API_KEY=sk-this-must-not-leak")
    return {
        "image": str(image),
        "secret": str(secret),
        "environ": "/proc/self/environ",
        "missing": str(tmp_path / "no-such-file.png"),
    }


@e2e
@pytest.mark.parametrize("api_name", ["caption", "classify", "compare"])
@pytest.mark.parametrize("with_meta", [True, False], ids=["filedata", "no-meta"])
def test_a_server_path_is_refused_the_same_way_whether_or_not_it_exists(
    server, vendor_calls, server_files, api_name, with_meta
):
    for name, path in server_files.items():
        ref = meta(path) if with_meta else {"path": path}
        assert error_of(server, api_name, ref) == NOT_AN_UPLOAD, name
    assert vendor_calls == []
    assert logged() == ([], [])  # no run, and no copy of any of those files in the run log


@e2e
def test_the_rest_api_refuses_a_server_path_too(server, vendor_calls, server_files):
    with httpx.Client(base_url=server.local_url, timeout=60) as http:
        for path in server_files.values():
            started = http.post("gradio_api/call/caption", json={"data": payload(server, "caption", {"path": path})})
            started.raise_for_status()
            answer = http.get(f"gradio_api/call/caption/{started.json()['event_id']}").text
            assert "event: error" in answer and NOT_AN_UPLOAD in answer, answer
            assert "sk-this-must-not-leak" not in answer
    assert vendor_calls == [] and logged() == ([], [])


def upload(demo, data: bytes, name: str = "photo.png") -> str:
    """Upload through the page's upload route; the path Gradio gives the file."""
    with httpx.Client(base_url=demo.local_url, timeout=60) as http:
        answer = http.post("gradio_api/upload", files={"files": (name, data, "image/png")})
        answer.raise_for_status()
        return answer.json()[0]


@e2e
@pytest.mark.parametrize("with_meta", [True, False], ids=["filedata", "no-meta"])
def test_a_data_uri_beside_a_real_upload_is_refused(server, vendor_calls, with_meta):
    """Gradio decodes a `data:` URL in preference to the path: a real upload's path must not carry one in."""
    path = upload(server, png(8, 8))
    image = (meta(path) if with_meta else {"path": path}) | {"url": data_uri(png(12, 12))}
    for api_name in ("caption", "classify", "compare"):
        assert error_of(server, api_name, image) == NOT_AN_UPLOAD, api_name
    assert error_of(server, "caption", meta(path)) is None  # the upload alone is fine
    assert vendor_calls == [("caption", 8, 8)]


@e2e
@pytest.mark.parametrize(
    "image",
    [
        meta("x.png") | {"url": data_uri(png(8, 8))},
        {"path": "x.png", "url": data_uri(png(8, 8))},
        {"path": None, "url": data_uri(png(8, 8))},
        {"url": data_uri(png(8, 8))},
        data_uri(png(8, 8)),  # a bare string, as a data: URI
        "/proc/self/environ",
        "http://127.0.0.1:9/x.png",
    ],
    ids=["filedata-url", "no-meta-url", "url-only-with-none-path", "url-only", "bare-data", "bare-path", "bare-url"],
)
def test_a_data_uri_or_a_bare_string_is_refused(server, vendor_calls, image):
    for api_name in ("caption", "classify", "compare"):
        assert error_of(server, api_name, image) == NOT_AN_UPLOAD, api_name
    assert vendor_calls == [] and logged() == ([], [])


MEMORY_PROBE = textwrap.dedent("""
    # The app in a process of its own: how much a data: image raises its peak memory (ru_maxrss).
    # argv: an image to upload, a small data: URI, then the bombs' data: URIs (each in a file).
    import json, os, resource, sys, uuid
    import httpx
    sys.path.insert(0, os.getcwd())
    from adapters import registry
    from tests.fakes import providers as fake
    registry.register(fake.provider())
    import app
    app.demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True,
                    **app.launch_options())
    index = next(i for i, fn in app.demo.fns.items() if fn.api_name == "caption")

    with httpx.Client(base_url=app.demo.local_url, timeout=60) as http, open(sys.argv[1], "rb") as f:
        path = http.post("gradio_api/upload", files={"files": ("photo.png", f, "image/png")}).json()[0]  # a real upload

    def call(uri, form="no-meta"):  # without meta Gradio leaves the url as sent, and would decode it
        session = uuid.uuid4().hex
        image = {"path": path, "url": uri} | ({"meta": {"_type": "gradio.FileData"}} if form == "filedata" else {})
        body = {"data": [image, "", "fake", ""],
                "fn_index": index, "session_hash": session}
        with httpx.Client(base_url=app.demo.local_url, timeout=120) as http:
            http.post("gradio_api/queue/join", json=body).raise_for_status()
            with http.stream("GET", "gradio_api/queue/data", params={"session_hash": session}) as response:
                for line in response.iter_lines():
                    if "process_completed" in line:
                        done = json.loads(line[len("data:"):])
                        return None if done["success"] else (done.get("output") or {}).get("error")

    def peak_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    with open(sys.argv[2]) as f:
        small = f.read()
    for form in ("no-meta", "filedata", "no-meta"):  # warm every path a bomb takes: the baseline is the running peak
        call(small, form)
    out = []
    for name in sys.argv[3:]:
        with open(name) as f:
            uri = f.read()
        for form in ("no-meta", "filedata"):
            before = peak_mb()
            error = call(uri, form)
            out.append({"bomb": os.path.basename(name), "form": form, "error": error,
                        "peak_rise_mb": round(peak_mb() - before, 1)})
    app.demo.close()
    print("RESULT " + json.dumps(out))
""")


@e2e
def test_a_data_uri_bomb_is_refused_before_it_is_decoded(tmp_path):
    """20000 x 20000 (the reported one; Pillow, told the app's limit, refuses it too, at twice that) and
    8900 x 8900 RGB (79 MP: Pillow only warns, and Gradio decodes it: without the `data:` check its
    peak memory rose by 740 MB). Beside a real upload's path, as a page could send it."""
    files = [tmp_path / "photo.png"]
    files[0].write_bytes(png(8, 8))
    for name, image in (
        ("small", png(8, 8)),
        ("bomb-400mp", png(20000, 20000)),
        ("bomb-79mp-rgb", png(8900, 8900, "RGB")),
    ):
        files.append(tmp_path / f"{name}.txt")
        files[-1].write_text(data_uri(image))
    script = tmp_path / "memory_probe.py"
    script.write_text(MEMORY_PROBE)
    env = {**os.environ, "FMG_RUN_LOG": "off", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, str(script), *map(str, files)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    results = json.loads(lines[-1][len("RESULT ") :])
    assert [r["bomb"] for r in results] == ["bomb-400mp.txt"] * 2 + ["bomb-79mp-rgb.txt"] * 2
    for r in results:
        assert r["error"] == NOT_AN_UPLOAD, r
        assert r["peak_rise_mb"] < 100, r


class Recorder(http.server.BaseHTTPRequestHandler):
    requests: ClassVar[list[str]] = []

    def do_GET(self):
        Recorder.requests.append(self.path)
        body = png(8, 8)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def web_server(monkeypatch):
    """A web server on 127.0.0.1 that records every request; Gradio is told to fetch from it as
    from a public host (it refuses loopback on its own, not e.g. `*.hf.space`, which it allow-lists)."""
    from gradio import processing_utils

    Recorder.requests = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setattr(
        processing_utils, "PUBLIC_HOSTNAME_WHITELIST", [*processing_utils.PUBLIC_HOSTNAME_WHITELIST, "127.0.0.1"]
    )
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@e2e
def test_an_http_url_as_a_file_is_refused_and_never_fetched(server, vendor_calls, web_server):
    from gradio import processing_utils

    # the control: Gradio's own downloader does reach this server, so "no request" below means refused
    assert asyncio.run(processing_utils.async_ssrf_protected_get(f"{web_server}/control.png")).status_code == 200
    assert Recorder.requests == ["/control.png"]
    Recorder.requests.clear()
    url = f"{web_server}/photo.png"
    for image in (meta(url), {"path": url}, {"path": None, "url": url}, meta("photo.png") | {"url": url}):
        for api_name in ("caption", "compare"):
            assert error_of(server, api_name, image) == NOT_AN_UPLOAD, (api_name, image)
    assert Recorder.requests == []
    assert vendor_calls == [] and logged() == ([], [])


@e2e
def test_an_http_url_is_refused_even_from_a_working_folder_inside_the_uploads(server, vendor_calls, web_server):
    """Where the URL, read as a relative path, names a file in the upload folder, it is still a URL."""
    from gradio import utils as gradio_utils

    folder = Path(gradio_utils.get_upload_folder()) / f"fmg-test-{uuid.uuid4().hex}"
    url = f"{web_server}/photo.png"
    decoy = folder / url.replace("://", ":/")
    decoy.parent.mkdir(parents=True)
    decoy.write_bytes(png(8, 8))
    here = os.getcwd()
    os.chdir(folder)  # the server's too: it runs in this process
    try:
        assert error_of(server, "caption", meta(url)) == NOT_AN_UPLOAD
    finally:
        os.chdir(here)
        shutil.rmtree(folder)
    assert Recorder.requests == [] and vendor_calls == []


@pytest.fixture
def client(server):
    return Client(server.local_url, verbose=False)


@e2e
def test_an_upload_still_works_and_is_kept_in_the_run_log(client, vendor_calls, tmp_path):
    path = tmp_path / "photo.png"
    Image.new("RGB", (50, 40), "blue").save(path)
    text, _ = client.predict(handle_file(str(path)), "", "fake", "", api_name="/caption")
    scores, _ = client.predict(handle_file(str(path)), "a cat, a dog", "fake", "", api_name="/classify")
    assert text == "a 50x40 image" and {c["label"] for c in scores["confidences"]} == {"a cat", "a dog"}
    assert vendor_calls == [("caption", 50, 40), ("classify", 50, 40)]
    rows, kept = logged()
    assert len(rows) == 2 and [p.read_bytes() for p in kept] == [path.read_bytes()]  # one copy, by content


@e2e
def test_the_example_images_still_work(server, vendor_calls):
    if not examples.images():
        pytest.skip("scikit-image is not installed: the app has no example images")
    # what the page sends once an example is clicked: the sample as Gradio cached it for the page
    samples = [c["props"]["samples"] for c in server.config["components"] if c.get("type") == "dataset"]
    cached = next(s[0][0] for s in samples if isinstance(s[0][0], dict))
    assert error_of(server, "caption", cached) is None
    # and an example named by its own path
    cat = examples.example_dir() / "cat.png"
    done = raw_call(server, "caption", {"path": str(cat)})
    assert done["success"], done
    assert len(vendor_calls) == 2


# --- the image limits, with files uploaded through the server -------------------------------------


def upload_file(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return handle_file(str(path))


LIMIT_MESSAGE = {  # Pillow, told the app's limit, stops at opening; else the app's own check does, before decoding
    "app": "'big.png' has more pixels than the 40 megapixel limit",
    "pillow-default": "The image is 8000 x 6000 pixels, more than the 40 megapixel limit",
}
PILLOW_DEFAULT_PIXELS = 89_478_485  # Image.MAX_IMAGE_PIXELS as Pillow ships it (it refuses at twice that)


@e2e
@pytest.mark.parametrize("pillow_limit", ["app", "pillow-default"])
def test_an_image_over_40_megapixels_is_refused_before_it_is_decoded(
    client, vendor_calls, tmp_path, monkeypatch, pillow_limit
):
    """48 MP: under Pillow's own refusal. With Pillow's default limit the app's check is all there is
    (as in a tab launched on its own, without `app.build()`)."""
    assert Image.MAX_IMAGE_PIXELS == inputs.MAX_IMAGE_PIXELS  # app.build() set Pillow's limit to the app's
    if pillow_limit == "pillow-default":
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", PILLOW_DEFAULT_PIXELS)
    image = upload_file(tmp_path, "big.png", png(8000, 6000))  # 6 KB
    for api_name in ("/caption", "/classify"):
        with pytest.raises(AppError, match=LIMIT_MESSAGE[pillow_limit]):
            client.predict(image, "a cat, a dog" if api_name == "/classify" else "", "fake", "", api_name=api_name)
    assert vendor_calls == []
    rows, kept = logged()
    assert len(rows) == 2 and all("megapixel limit" in r["error"] for r in rows) and kept == []


@e2e
def test_an_image_of_exactly_40_megapixels_gets_through(client, vendor_calls, tmp_path):
    image = upload_file(tmp_path, "just-fits.png", png(8000, 5000))
    text, _ = client.predict(image, "", "fake", "", api_name="/caption")
    assert text == "a 2048x1280 image" and vendor_calls == [("caption", 2048, 1280)]  # scaled down, as any image


@e2e
def test_an_image_file_over_20_mb_is_refused(client, vendor_calls, tmp_path):
    data = png(2700, 2700, "RGB", noise=True)  # 7.3 MP of noise: 20.9 MB
    assert inputs.MAX_IMAGE_BYTES < len(data) < 25 * 2**20  # over the app's limit, under the upload limit
    with pytest.raises(AppError, match=r"is 20\.\d MB; the limit is 20 MB"):
        client.predict(upload_file(tmp_path, "noise.png", data), "", "fake", "", api_name="/caption")
    assert vendor_calls == []
    rows, kept = logged()
    assert len(rows) == 1 and "the limit is 20 MB" in rows[0]["error"] and kept == []


@e2e
def test_an_image_file_just_under_20_mb_gets_through(client, vendor_calls, tmp_path):
    data = png(2640, 2640, "RGB", noise=True)
    assert inputs.MAX_IMAGE_BYTES - 100_000 < len(data) <= inputs.MAX_IMAGE_BYTES
    text, _ = client.predict(upload_file(tmp_path, "noise.png", data), "", "fake", "", api_name="/caption")
    assert text == "a 2048x2048 image" and vendor_calls == [("caption", 2048, 2048)]


@e2e
@pytest.mark.parametrize("which", ["bare-path", "background", "layer"])
def test_an_edit_never_opens_a_server_file(server, server_files, which):
    """/edit's ImageEditor value holds file references too: a bare path, or a background or layer
    naming a server file, is refused before the app or Gradio opens it."""
    fn = server.fns[fn_index(server, "edit")]
    position = next(i for i, b in enumerate(fn.inputs) if isinstance(b, gr.ImageEditor))
    secret = meta(server_files["secret"])
    editor = {
        "bare-path": server_files["image"],
        "background": {"background": meta(server_files["image"]), "layers": [], "composite": None},
        "layer": {"background": None, "layers": [secret], "composite": None},
    }[which]
    data = [None] * len(fn.inputs)
    data[position] = editor
    session = uuid.uuid4().hex
    body = {"data": data, "fn_index": fn_index(server, "edit"), "session_hash": session}
    with httpx.Client(base_url=server.local_url, timeout=60) as http:
        http.post("gradio_api/queue/join", json=body).raise_for_status()
        with http.stream("GET", "gradio_api/queue/data", params={"session_hash": session}) as response:
            done = next(json.loads(line[5:]) for line in response.iter_lines() if "process_completed" in line)
    assert not done["success"] and done["output"]["error"] == NOT_AN_UPLOAD
