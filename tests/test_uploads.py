"""Uploads to the VAE tab: size cap, non-images, truncated files and decompression bombs are refused by name.

Each file goes through gradio_client's `handle_file` to the running app (the `client` fixture), as an
attendee's upload would; the last test checks the server still serves a normal request afterwards.
"""

from __future__ import annotations

import io
import struct
import urllib.error
import urllib.request
import uuid
import zlib

import pytest
from gradio_client import handle_file
from PIL import Image

from demos.validation import MAX_UPLOAD_MB, MAX_UPLOAD_MEGAPIXELS


def interpolate(client, path_a: str, path_b: str):
    return client.predict(handle_file(path_a), handle_file(path_b), 3, "faces", "slerp", api_name="/vae_interpolate")


def png_declaring(width: int, height: int) -> bytes:
    """A few hundred bytes that claim to be a width x height PNG: what a decompression bomb looks like at first."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


@pytest.fixture
def face_png(tmp_path) -> str:
    path = tmp_path / "face.png"
    Image.new("RGB", (64, 64), (200, 150, 120)).save(path)
    return str(path)


def test_a_text_file_named_png_is_refused_as_not_an_image(client, face_png, tmp_path):
    fake = tmp_path / "notes.png"
    fake.write_text("these are my workshop notes, not a picture\n")
    with pytest.raises(Exception, match="Image A is not an image file this app can read"):
        interpolate(client, str(fake), face_png)


def test_a_truncated_jpeg_is_refused_as_corrupt(client, face_png, tmp_path):
    buffer = io.BytesIO()
    Image.effect_noise((256, 256), 60).convert("RGB").save(buffer, "JPEG", quality=90)
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 3])
    with pytest.raises(Exception, match="Image B is corrupt or truncated"):
        interpolate(client, face_png, str(truncated))


@pytest.mark.parametrize("side", [5_000, 30_000], ids=["25-megapixels", "900-megapixels"])
def test_a_decompression_bomb_is_refused_before_decoding(client, face_png, tmp_path, side):
    """25 MP crosses PIL's warning (turned into a refusal), 900 MP its hard limit: both name the cap."""
    bomb = tmp_path / f"bomb-{side}.png"
    bomb.write_bytes(png_declaring(side, side))
    assert bomb.stat().st_size < 1000
    with pytest.raises(Exception, match=f"Image A is too large: .*at most {MAX_UPLOAD_MEGAPIXELS} megapixels"):
        interpolate(client, str(bomb), face_png)


def test_a_file_over_the_size_cap_is_refused_by_the_client_and_the_server(client, app_url, tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * (MAX_UPLOAD_MB * 1024 * 1024 + 1))
    with pytest.raises(Exception, match="exceeds the maximum file size"):
        interpolate(client, str(big), str(big))
    # A client that skips that check meets the server's own limit (launch's max_file_size).
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="big.png"\r\n'
            f"Content-Type: image/png\r\n\r\n"
        ).encode()
        + big.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        app_url + "gradio_api/upload",
        data=body,
        method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=60)
    assert refused.value.code == 413
    assert str(MAX_UPLOAD_MB * 1024 * 1024) in refused.value.read().decode()


def test_the_server_keeps_serving_after_bad_uploads(client, face_png, tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_declaring(30_000, 30_000))
    for _ in range(3):
        with pytest.raises(Exception, match="too large"):
            interpolate(client, str(bomb), face_png)
    frames = interpolate(client, face_png, face_png)  # the State output is not part of the API answer
    assert [item["caption"] for item in frames] == ["t=0.00", "t=0.50", "t=1.00"]
