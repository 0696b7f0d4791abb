"""gpupool-ssh-proxy's WebSocket framing and checks (stdlib only; it runs on the user's
machine), and the lab side's checks of what a client sends. End to end with real sshd,
ssh, scp and sftp: tests/lab/test_ssh.py."""

from __future__ import annotations

import io
import struct

import pytest

from gpupool import sshproxy
from gpupool.lab.ssh import parse_key, session_environment


def unmask(data: bytes) -> tuple[int, bytes]:
    """What a server reads from a client frame."""
    b0, b1 = data[0], data[1]
    assert b0 & 0x80 and b1 & 0x80  # final, masked
    n, i = b1 & 0x7F, 2
    if n == 126:
        (n,), i = struct.unpack("!H", data[2:4]), 4
    elif n == 127:
        (n,), i = struct.unpack("!Q", data[2:10]), 10
    mask, body = data[i : i + 4], data[i + 4 :]
    assert len(body) == n
    return b0 & 0x0F, bytes(b ^ mask[k % 4] for k, b in enumerate(body))


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 200_000])
def test_client_frames_carry_any_size(size):
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    assert unmask(sshproxy.frame(payload)) == (2, payload)


def server_frame(payload: bytes, opcode: int = 2) -> bytes:
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, n])
    elif n < 1 << 16:
        head = bytes([0x80 | opcode, 126]) + struct.pack("!H", n)
    else:
        head = bytes([0x80 | opcode, 127]) + struct.pack("!Q", n)
    return head + payload


def test_server_frames_are_read_and_bounded():
    stream = io.BytesIO(server_frame(b"SSH-2.0-OpenSSH\r\n") + server_frame(b"x" * 70_000))
    assert sshproxy.read_frame(stream) == (2, b"SSH-2.0-OpenSSH\r\n")
    assert sshproxy.read_frame(stream) == (2, b"x" * 70_000)
    with pytest.raises(EOFError):
        sshproxy.read_frame(stream)
    huge = io.BytesIO(bytes([0x82, 127]) + struct.pack("!Q", sshproxy.MAX_FRAME + 1))
    with pytest.raises(sshproxy.ProxyError, match="at most"):
        sshproxy.read_frame(huge)


def test_carry_answers_pings_and_ends_on_close():
    class Sock:
        sent = b""

        def sendall(self, data: bytes) -> None:
            Sock.sent += data

    reader = io.BytesIO(server_frame(b"hi", 9) + server_frame(b"out") + server_frame(b"", 8))
    out = io.BytesIO()
    assert sshproxy.carry(Sock(), reader, io.BytesIO(b""), out) == 0  # type: ignore[arg-type]
    assert out.getvalue() == b"out"
    frames, rest = [], Sock.sent
    while rest:  # the pong, and the close frame of the empty input, in either order
        n = len(sshproxy.frame(b"hi")) if rest[0] & 0x0F == 10 else len(sshproxy.frame(b"xx"))
        frames.append(unmask(rest[:n]))
        rest = rest[n:]
    assert (10, b"hi") in frames


def test_the_token_comes_from_a_file_or_the_environment_never_empty(tmp_path, monkeypatch):
    monkeypatch.delenv("GPUPOOL_TOKEN", raising=False)
    with pytest.raises(sshproxy.ProxyError, match="no hub token"):
        sshproxy.read_token(None)
    (tmp_path / "t").write_text("abc\n")
    assert sshproxy.read_token(str(tmp_path / "t")) == "abc"
    monkeypatch.setenv("GPUPOOL_TOKEN", "a b")  # would break the request's header
    with pytest.raises(sshproxy.ProxyError):
        sshproxy.read_token(None)


def test_a_url_that_is_not_one_is_refused():
    with pytest.raises(sshproxy.ProxyError, match="not a ws://"):
        sshproxy.handshake("ftp://hub/user/a/gpupool/ssh", "t", "k")


KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKn8tC0lGSbSgAXJtYJNF7+uVVjgUjnHTOEB2X9vY5+S"


def test_a_public_key_is_one_line_of_an_allowed_type():
    assert parse_key(KEY + " me@laptop") == KEY  # the comment is dropped
    for bad in (
        "",
        "ssh-dss AAAAB3NzaC1kc3MAAACBAP" + "A" * 60,
        KEY.replace("AAAA", "AA*A", 1),
        KEY + "\nssh-ed25519 AAAA",  # a second line would be a second key
        "ssh-ed25519 " + "A" * 5000,
    ):
        with pytest.raises(ValueError, match="not an OpenSSH public key"):
            parse_key(bad)


def test_sessions_get_the_slice_the_pool_and_the_hub_variables_only():
    env = session_environment(
        {
            "CUDA_DEVICE_MEMORY_LIMIT_0": "20480m",
            "CUDA_DEVICE_SM_LIMIT_0": "30",
            "LD_PRELOAD": "/usr/local/vgpu/libvgpu.so",
            "GPUPOOL_GPUS": '[{"uuid": "GPU-1"}]',
            "JUPYTERHUB_API_TOKEN": "tok",
            "AWS_SECRET": "no",
            "GPUPOOL_BAD": "two\nlines",
        }
    )
    assert env == {
        "CUDA_DEVICE_MEMORY_LIMIT_0": "20480m",
        "CUDA_DEVICE_SM_LIMIT_0": "30",
        "GPUPOOL_GPUS": '[{"uuid": "GPU-1"}]',
        "JUPYTERHUB_API_TOKEN": "tok",
        "LD_PRELOAD": "/usr/local/vgpu/libvgpu.so",
    }


def test_a_malicious_answer_is_refused_cleanly_and_printed_harmlessly():
    """A server that answers with a broken Content-Length, escape sequences and endless
    headers: a ProxyError with printable text, not a traceback or a hung proxy."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(
            b"HTTP/1.1 403 Forbidden\x1b]0;owned\x07\r\nContent-Length: \xc2\xb2\r\n"
            + b"X-Same: 1\r\n" * 500
            + b"\r\n"
        )
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    with pytest.raises(sshproxy.ProxyError) as e:
        sshproxy.handshake(f"ws://127.0.0.1:{port}/user/a/gpupool/ssh", "t", "k", timeout=10)
    listener.close()
    text = str(e.value)
    assert "403 Forbidden" in text
    assert "\x1b" not in text and "\x07" not in text
