"""converters.sources against a throwaway HTTP server on 127.0.0.1; never touches the network or ~."""
from __future__ import annotations

import functools
import hashlib
import http.server
import io
import logging
import socket
import threading
import zipfile
from pathlib import Path

import pytest

from converters import sources
from converters.errors import DownloadError, WeightsNotFound
from converters.sources import SourceWeights, gluoncv_weights, resolve

pytestmark = pytest.mark.timeout(60)

PAYLOAD = b"not really mxnet params\x00" * 4096
PAYLOAD_SHA1 = hashlib.sha1(PAYLOAD).hexdigest()


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def server(tmp_path, monkeypatch):
    """Serves tmp_path/'srv'; .hits lists every request path; shut down after the test."""
    root = tmp_path / "srv"
    (root / "gluon" / "models").mkdir(parents=True)
    hits: list[str] = []

    class Counting(_Handler):
        def do_GET(self) -> None:
            hits.append(self.path)
            super().do_GET()

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                            functools.partial(Counting, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    monkeypatch.setenv("MXNET_GLUON_REPO", f"http://127.0.0.1:{httpd.server_address[1]}")
    httpd.root, httpd.hits = root, hits  # type: ignore[attr-defined]
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Home, gluoncv cache and weights dir all under tmp_path; no proxy may divert 127.0.0.1."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MXNET_HOME", str(tmp_path / "mxnet"))
    monkeypatch.setenv("ZOOPORT_WEIGHTS_DIR", str(tmp_path / "weights" / "src"))
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def src(tmp_path) -> Path:
    return tmp_path / "weights" / "src"


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _publish(server, name: str = "fakenet", data: bytes = PAYLOAD,
             members: dict[str, bytes] | None = None) -> SourceWeights:
    """Put a gluoncv-style zip on the server; the record always carries PAYLOAD's sha1."""
    record = gluoncv_weights(name, PAYLOAD_SHA1)
    archive = _zip(members if members is not None else {record.filename: data})
    (server.root / "gluon" / "models" / record.url.rsplit("/", 1)[-1]).write_bytes(archive)
    return record


def test_gluoncv_url_scheme(monkeypatch):
    monkeypatch.delenv("MXNET_GLUON_REPO", raising=False)
    rec = gluoncv_weights("resnet50_v1", "cc729d95031ca98cf2ff362eb57dee4d9994e4b2")
    assert rec.url == ("https://apache-mxnet.s3-accelerate.dualstack.amazonaws.com/"
                       "gluon/models/resnet50_v1-cc729d95.zip")
    assert rec.filename == "resnet50_v1-cc729d95.params" and rec.archive == "zip"
    monkeypatch.setenv("MXNET_GLUON_REPO", "http://mirror.invalid/x")  # slash added, like gluoncv
    assert gluoncv_weights("a", "0" * 40).url == "http://mirror.invalid/x/gluon/models/a-00000000.zip"
    with pytest.raises(ValueError):
        gluoncv_weights("a", "cc729d95")


def test_default_dirs_follow_env(tmp_path, monkeypatch):
    assert sources.default_src_dir() == tmp_path / "weights" / "src"
    assert sources.default_cache_dirs() == (tmp_path / "mxnet" / "models",)
    monkeypatch.delenv("MXNET_HOME")
    monkeypatch.delenv("ZOOPORT_WEIGHTS_DIR")
    assert sources.default_cache_dirs() == (tmp_path / "home" / ".mxnet" / "models",)
    assert sources.default_src_dir() == sources.ROOT / "weights" / "src"


def test_hash_helpers(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(PAYLOAD)
    assert sources.sha1sum(path) == PAYLOAD_SHA1
    assert sources.sha256sum(str(path)) == hashlib.sha256(PAYLOAD).hexdigest()


def test_download_verifies_and_is_atomic_then_cached(server, src):
    record = _publish(server)
    got = resolve(record)
    assert got == src / record.filename and got.read_bytes() == PAYLOAD
    assert sorted(p.name for p in src.iterdir()) == [record.filename]  # no temp files left
    assert server.hits == [f"/gluon/models/fakenet-{PAYLOAD_SHA1[:8]}.zip"]
    assert resolve(record) == got
    assert len(server.hits) == 1  # second resolve served from weights/src


def test_unzipped_file_download(server, src):
    (server.root / "raw.params").write_bytes(PAYLOAD)
    url = f"http://127.0.0.1:{server.server_address[1]}/raw.params"
    record = SourceWeights("raw", PAYLOAD_SHA1, url, "raw.params", archive="none")
    assert resolve(record).read_bytes() == PAYLOAD
    assert server.hits == ["/raw.params"]


def test_sha1_mismatch_leaves_nothing(server, src):
    record = _publish(server, data=b"tampered" + PAYLOAD)
    with pytest.raises(DownloadError) as err:
        resolve(record)
    msg = str(err.value)
    assert record.url in msg and PAYLOAD_SHA1 in msg
    assert hashlib.sha1(b"tampered" + PAYLOAD).hexdigest() in msg
    assert list(src.iterdir()) == []


def test_http_404_is_a_download_error(server, src):
    record = gluoncv_weights("absent", PAYLOAD_SHA1)
    with pytest.raises(DownloadError, match="404"):
        resolve(record)
    assert list(src.iterdir()) == []


def test_zip_path_traversal_rejected(server, src, tmp_path):
    record = _publish(server, members={"../../evil.params": PAYLOAD, "fakenet.params": PAYLOAD})
    with pytest.raises(DownloadError, match="unsafe member"):
        resolve(record)
    assert list(src.iterdir()) == []
    assert not list(tmp_path.rglob("evil.params"))


def test_zip_without_params_or_oversized(server, src, monkeypatch):
    with pytest.raises(DownloadError, match="one .params"):
        resolve(_publish(server, members={"README": b"x"}))
    monkeypatch.setattr(sources, "MAX_BYTES", 1000)
    with pytest.raises(DownloadError, match="more than 1000 bytes"):
        resolve(_publish(server, name="big"))
    assert list(src.iterdir()) == []


def test_explicit_file_wins(server, src, tmp_path):
    record = _publish(server)
    src.mkdir(parents=True)
    (src / record.filename).write_bytes(PAYLOAD)
    mine = tmp_path / "mine.params"
    mine.write_bytes(b"user's own, hash not checked")
    assert resolve(record, mine) == mine
    assert resolve(record, str(mine)) == mine
    with pytest.raises(WeightsNotFound, match="missing.params"):
        resolve(record, tmp_path / "missing.params")
    assert server.hits == []


def test_src_dir_plain_name(server, src):
    record = _publish(server)
    src.mkdir(parents=True)
    (src / "fakenet.params").write_bytes(b"placed by hand")
    assert resolve(record) == src / "fakenet.params"
    assert server.hits == []


def test_gluoncv_cache_verified(server, src, tmp_path, caplog):
    record = _publish(server)
    cache = tmp_path / "mxnet" / "models"  # MXNET_HOME/models, gluoncv's layout
    cache.mkdir(parents=True)
    (cache / record.filename).write_bytes(PAYLOAD)
    assert resolve(record) == cache / record.filename
    assert server.hits == [] and not src.exists()

    (cache / record.filename).write_bytes(b"corrupt")
    with caplog.at_level(logging.WARNING, logger="converters.sources"):
        got = resolve(record)
    assert got == src / record.filename and len(server.hits) == 1  # skipped, then downloaded
    assert any(str(cache / record.filename) in r.getMessage() for r in caplog.records)


def test_explicit_cache_dirs_argument(server, tmp_path):
    record = _publish(server)
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / record.filename).write_bytes(PAYLOAD)
    assert resolve(record, cache_dirs=[other], src_dir=tmp_path / "s") == other / record.filename
    assert server.hits == []


def test_offline_message(server, src, tmp_path):
    record = _publish(server)
    (tmp_path / "mxnet" / "models").mkdir(parents=True)
    (tmp_path / "mxnet" / "models" / record.filename).write_bytes(b"wrong hash")
    with pytest.raises(WeightsNotFound) as err:
        resolve(record, download=False)
    msg = str(err.value)
    assert "\n" not in msg
    for needle in ("--weights", "WEIGHTS=", "weights/src", "--init random", record.filename,
                   record.url, "download disabled"):
        assert needle in msg, needle
    assert server.hits == []


def test_connection_refused_is_weights_not_found(monkeypatch, src):
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("MXNET_GLUON_REPO", f"http://127.0.0.1:{port}/")
    record = gluoncv_weights("fakenet", PAYLOAD_SHA1)
    with pytest.raises(WeightsNotFound, match="ConnectionError.*--weights"):
        resolve(record)
    assert list(src.iterdir()) == []


# ---------------------------------------------------------------- Paddle: .tar checkpoint dirs, wheels

def _tar(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tf.addfile(info)
    return buf.getvalue()


def _tar_record(server, body: bytes, name: str = "Net_pretrained") -> SourceWeights:
    (server.root / f"{name}.tar").write_bytes(body)
    port = server.server_address[1]
    return SourceWeights(name, None, f"http://127.0.0.1:{port}/{name}.tar", name, archive="tar")


def test_tar_checkpoint_directory_download_then_cached(server, src):
    record = _tar_record(server, _tar({"Net_pretrained/conv1_weights": b"a", "Net_pretrained/fc_0.w_0": b"bb"}))
    path = resolve(record)
    assert path == src / "Net_pretrained" and path.is_dir()
    assert sorted(p.name for p in path.iterdir()) == ["conv1_weights", "fc_0.w_0"]
    assert sorted(p.name for p in src.iterdir()) == ["Net_pretrained"]  # no temp files left
    assert resolve(record) == path and len(server.hits) == 1  # cached: no second download
    assert sources.source_sha256(path) != sources.source_sha256(path / "fc_0.w_0")


@pytest.mark.parametrize("members, links", [({"../evil": b"x"}, None), ({"/abs": b"x"}, None),
                                            ({"a/ok": b"x"}, {"a/link": "/etc/passwd"})])
def test_tar_unsafe_members_rejected_and_nothing_left(server, src, members, links):
    record = _tar_record(server, _tar(members, links))
    with pytest.raises(DownloadError, match="unsafe member"):
        resolve(record)
    assert not src.exists() or list(src.iterdir()) == []


def test_package_record_resolves_inside_the_installed_package(tmp_path, monkeypatch):
    pkg = tmp_path / "site" / "fakepkg"
    (pkg / "models" / "m").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise ImportError('never imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    rec = SourceWeights("m", None, "pypi:fakepkg==1", "m", archive="package", package="fakepkg", member="models/m")
    assert resolve(rec) == pkg / "models" / "m"
    missing = SourceWeights("m", None, "pypi:nopkg==1", "m", archive="package", package="nopkg_zz", member="m")
    with pytest.raises(WeightsNotFound, match="package 'nopkg_zz' is not installed"):
        resolve(missing)
    with pytest.raises(ValueError, match="package and member"):
        SourceWeights("m", None, "pypi:x", "m", archive="package")
