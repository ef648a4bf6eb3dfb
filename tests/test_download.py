"""Downloads (facesketch.download, weights.fetch, FS2K's Google Drive fetch) against a local HTTP
server on 127.0.0.1: a good file, a file whose hash is wrong, and connections dropped mid-body."""

from __future__ import annotations

import hashlib
import http.server
import threading
import zipfile

import pytest

from facesketch.data import archive
from facesketch.errors import DataError, WeightsError
from facesketch.maps import weights

GOOD = bytes(range(256)) * 4096  # 1 MiB


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    drops: dict[str, int] = {}  # path -> how many more GETs to cut off half way
    log: list[tuple[str, str | None]] = []

    def do_GET(self):  # noqa: N802 (http.server's naming)
        body = self.files.get(self.path)
        self.log.append((self.path, self.headers.get("Range")))
        if body is None:
            self.send_error(404)
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        part = body[start:]
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(part)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if self.drops.get(self.path, 0) > 0:
            self.drops[self.path] -= 1
            self.wfile.write(part[: len(part) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)  # the connection drops mid-body
            self.close_connection = True
            return
        self.wfile.write(part)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    _Handler.files, _Handler.drops, _Handler.log = {}, {}, []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _Handler
    httpd.shutdown()
    httpd.server_close()


def _drive_at(monkeypatch, base: str) -> None:
    """Google Drive file ids served by the local server (gdown takes any URL)."""
    from facesketch import download

    real = download.fetch_gdrive
    monkeypatch.setattr(download, "fetch_gdrive",
                        lambda file_id, dest, **kw: real(file_id, dest, url=f"{base}/uc?id={file_id}", **kw))


def _register(monkeypatch, url: str, **fingerprint) -> None:
    entry = weights.REGISTRY["vgg19"]
    fields = {**entry.__dict__, "urls": (url,), "sha256": None, "sha256_prefix": None, **fingerprint}
    monkeypatch.setitem(weights.REGISTRY, "vgg19", weights.WeightFile(**fields))


def test_good_file_is_fetched_once_and_verified(server, tmp_path, monkeypatch):
    base, handler = server
    handler.files["/vgg19.pth"] = GOOD
    _register(monkeypatch, f"{base}/vgg19.pth", sha256=hashlib.sha256(GOOD).hexdigest())
    path = weights.fetch("vgg19", tmp_path)
    assert path == tmp_path / "vgg" / "vgg19-dcbb9e9d.pth" and path.read_bytes() == GOOD
    gets = len(handler.log)
    assert weights.fetch("vgg19", tmp_path) == path and len(handler.log) == gets  # cached: no new request
    assert [p.name for p in path.parent.iterdir() if not p.name.endswith(".verified")] == [path.name]


@pytest.mark.parametrize("fingerprint", ["sha256", "sha256_prefix"])
def test_wrong_hash_never_lands(server, tmp_path, monkeypatch, fingerprint):
    base, handler = server
    handler.files["/vgg19.pth"] = b"not the weights" * 1000
    digest = hashlib.sha256(GOOD).hexdigest()
    _register(monkeypatch, f"{base}/vgg19.pth", **{fingerprint: digest if fingerprint == "sha256" else digest[:8]})
    with pytest.raises(WeightsError, match="could not fetch 'vgg19'") as e:
        weights.fetch("vgg19", tmp_path)
    assert "vgg19-dcbb9e9d.pth" in str(e.value) and "facesketch weights fetch vgg19" in str(e.value)
    folder = tmp_path / "vgg"
    assert not folder.exists() or not [p for p in folder.iterdir() if p.stat().st_size]  # nothing usable left


def test_dropped_connection_resumes_with_a_range_request(server, tmp_path, monkeypatch):
    base, handler = server
    handler.files["/vgg19.pth"] = GOOD
    handler.drops["/vgg19.pth"] = 1
    _register(monkeypatch, f"{base}/vgg19.pth", sha256=hashlib.sha256(GOOD).hexdigest())
    path = weights.fetch("vgg19", tmp_path)
    assert path.read_bytes() == GOOD
    ranges = [r for p, r in handler.log if p == "/vgg19.pth"]
    assert ranges[0] is None and ranges[1] == f"bytes={len(GOOD) // 2}-", ranges  # continued, not restarted


def test_connection_that_always_drops_is_a_clear_error(server, tmp_path, monkeypatch):
    base, handler = server
    handler.files["/vgg19.pth"] = GOOD
    handler.drops["/vgg19.pth"] = 1000
    _register(monkeypatch, f"{base}/vgg19.pth", sha256=hashlib.sha256(GOOD).hexdigest())
    with pytest.raises(WeightsError, match="could not fetch 'vgg19'"):
        weights.fetch("vgg19", tmp_path)
    assert not (tmp_path / "vgg" / "vgg19-dcbb9e9d.pth").exists()


def test_fs2k_google_drive_download_goes_through_gdown(server, tmp_path, monkeypatch):
    """The Drive fetch with its address pointed at the local server (gdown takes any URL)."""
    base, handler = server
    zpath = tmp_path / "FS2K.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("FS2K/README.txt", GOOD)  # 1 MiB: gdown keeps what it received in whole chunks
    handler.files["/uc?id=FILEID"] = zpath.read_bytes()
    handler.drops["/uc?id=FILEID"] = 1
    _drive_at(monkeypatch, base)
    out = archive.fetch(tmp_path / "out" / "FS2K.zip", None, "FILEID", hashlib.sha256(zpath.read_bytes()).hexdigest())
    assert out.read_bytes() == zpath.read_bytes()
    ranges = [r for p, r in handler.log if p == "/uc?id=FILEID"]
    # continued from the bytes received (gdown keeps whole 512 KiB chunks of the half sent), not restarted
    assert len(ranges) == 2 and ranges[0] is None and ranges[1].startswith("bytes="), ranges
    assert 0 < int(ranges[1][6:-1]) <= len(zpath.read_bytes()) // 2, ranges
    handler.files["/uc?id=HTML"] = b"<html>quota exceeded</html>"
    with pytest.raises(DataError, match="not a zip archive.*Download FS2K.zip by hand"):
        archive.fetch(tmp_path / "out2" / "FS2K.zip", None, "HTML", None)
    assert not (tmp_path / "out2" / "FS2K.zip").exists()




def _partials(folder) -> list:
    return sorted(p for p in folder.glob("*.download*.part"))


def test_interrupted_url_download_continues_at_the_next_fetch(server, tmp_path, monkeypatch):
    """Every try of the first fetch drops: it fails, keeping the bytes it got; the next fetch asks
    for exactly the remaining bytes (HTTP Range) and the file matches its SHA-256."""
    base, handler = server
    handler.files["/vgg19.pth"] = GOOD
    handler.drops["/vgg19.pth"] = 1000
    _register(monkeypatch, f"{base}/vgg19.pth", sha256=hashlib.sha256(GOOD).hexdigest())
    with pytest.raises(WeightsError, match="run the same command to continue"):
        weights.fetch("vgg19", tmp_path)
    (partial,) = _partials(tmp_path / "vgg")
    kept = partial.stat().st_size
    assert 0 < kept < len(GOOD) and partial.read_bytes() == GOOD[:kept]
    handler.drops["/vgg19.pth"], handler.log[:] = 0, []
    path = weights.fetch("vgg19", tmp_path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == hashlib.sha256(GOOD).hexdigest()
    ranges = [r for p, r in handler.log if p == "/vgg19.pth" and r]
    assert ranges == [f"bytes={kept}-"], handler.log  # the remaining bytes only, once
    assert not _partials(tmp_path / "vgg")


def test_interrupted_google_drive_download_continues_at_the_next_fetch(server, tmp_path, monkeypatch):
    """The released HIDA checkpoint comes from the authors' Drive file through gdown, resumably."""
    base, handler = server
    drive_id = weights.REGISTRY["hida_released"].gdrive_id
    handler.files[f"/uc?id={drive_id}"] = GOOD
    handler.drops[f"/uc?id={drive_id}"] = 1000
    _drive_at(monkeypatch, base)
    with pytest.raises(WeightsError, match=f"(?s)Google Drive file {drive_id}.*run the same command to continue"):
        weights.fetch("hida_released", tmp_path)
    (partial,) = _partials(tmp_path / "hida")
    kept = partial.stat().st_size
    handler.drops[f"/uc?id={drive_id}"], handler.log[:] = 0, []
    path = weights.fetch("hida_released", tmp_path)
    assert path == tmp_path / "hida" / "_ckpt_epoch_749.ckpt"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == hashlib.sha256(GOOD).hexdigest()
    assert [r for _, r in handler.log if r] == [f"bytes={kept}-"], handler.log


def test_dsine_falls_back_to_the_authors_drive_folder(server, tmp_path, monkeypatch):
    """DSINE's README links a Drive folder: the file id of checkpoints/exp001_cvpr2024/dsine.pt is
    read from gdown's listing of that folder (stubbed here: it parses Drive's pages) and the file
    fetched by id when the URL fails."""
    import collections

    import gdown

    base, handler = server
    folder_id, inside = weights.REGISTRY["dsine"].gdrive_folder
    item = collections.namedtuple("Item", "id path local_path")
    listed = []

    def listing(id, skip_download, **kw):  # noqa: A002 (gdown's name)
        listed.append((id, skip_download))
        return [item("EVALZIP", "dsine_eval.zip", ""), item("KAPPA", "checkpoints/exp002_kappa/dsine.pt", ""),
                item("BEST", inside, "")]

    monkeypatch.setattr(gdown, "download_folder", listing)
    entry = weights.REGISTRY["dsine"]
    monkeypatch.setitem(weights.REGISTRY, "dsine", weights.WeightFile(**{**entry.__dict__,
                                                                          "urls": (f"{base}/missing.pt",)}))
    handler.files["/uc?id=BEST"] = GOOD
    _drive_at(monkeypatch, base)
    path = weights.fetch("dsine", tmp_path)
    assert path.read_bytes() == GOOD and listed == [(folder_id, True)]
    assert [p for p, _ in handler.log][0] == "/missing.pt" and "/uc?id=BEST" in [p for p, _ in handler.log]


def test_file_without_a_published_hash_is_downloaded_not_taken_from_the_empty_temporary(server, tmp_path,
                                                                                      monkeypatch):
    """pooch takes an existing file with no known hash for a finished download (a regression: the
    empty temporary file landed as the weights)."""
    base, handler = server
    handler.files["/vgg19.pth"] = GOOD
    _register(monkeypatch, f"{base}/vgg19.pth")  # no fingerprint at all
    path = weights.fetch("vgg19", tmp_path)
    assert path.read_bytes() == GOOD and [p for p, _ in handler.log] == ["/vgg19.pth"]
