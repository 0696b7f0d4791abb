"""gpupool-ssh-proxy's WebSocket framing and checks (stdlib only; it runs on the user's
machine), and the lab side's checks of what a client sends. End to end with real sshd,
ssh, scp and sftp: tests/lab/test_ssh.py."""

from __future__ import annotations

import io
import os
import random
import socket
import struct
import sys
import threading
import time

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


def test_frames_split_anywhere_across_reads_are_put_back_together():
    stream = (
        server_frame(b"SSH-2.0-OpenSSH\r\n") + server_frame(b"", 9) + server_frame(b"y" * 70_000)
    )
    stream += bytes([0x82, 0x85]) + b"abcd" + sshproxy._xor(b"hello", b"abcd")  # masked
    buf, got = bytearray(), []
    for i in range(len(stream)):  # one byte a read: every header and payload split
        buf += stream[i : i + 1]
        while (f := sshproxy.next_frame(buf)) is not None:
            got.append(f)
    assert got == [(2, b"SSH-2.0-OpenSSH\r\n"), (9, b""), (2, b"y" * 70_000), (2, b"hello")]
    assert buf == bytearray()
    with pytest.raises(sshproxy.ProxyError, match="at most"):  # before the payload arrives
        sshproxy.next_frame(bytearray([0x82, 127]) + struct.pack("!Q", sshproxy.MAX_FRAME + 1))


def bounded(call, seconds: float = 30):
    """call() in a thread: a carry that hangs fails the test instead of hanging it."""
    result = []
    thread = threading.Thread(target=lambda: result.append(call()), daemon=True)
    thread.start()
    thread.join(timeout=seconds)
    assert result, f"still running after {seconds} s"
    return result[0]


def run_carry(
    server_sends: list[bytes], *, end_input: bool, buffered: bytes = b"", linger: float = 5.0
) -> tuple[int, bytes, list[tuple[int, bytes]], float]:
    """carry() between one end of a socket pair and two pipes, while the other end sends
    ``server_sends`` one piece at a time and then reads what the client sent until the
    client's close frame or its end. (status, output, the client's frames, seconds)."""
    ours, theirs = socket.socketpair()
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    got: list[tuple[int, bytes]] = []

    def server() -> None:
        for piece in server_sends:
            theirs.sendall(piece)
            time.sleep(0.01)  # its own read on the other side
        reader = theirs.makefile("rb")
        try:
            while True:
                got.append(sshproxy.read_frame(reader))
                if got[-1][0] == 8:
                    return
        except (EOFError, OSError):
            return

    thread = threading.Thread(target=server, daemon=True)
    thread.start()
    if end_input:
        os.close(in_w)
    start = time.monotonic()
    status = bounded(lambda: sshproxy.carry(ours, in_r, out_w, buffered, linger=linger))
    seconds = time.monotonic() - start
    thread.join(timeout=10)
    os.close(out_w)
    with os.fdopen(out_r, "rb") as f:
        output = f.read()
    os.close(in_r)
    if not end_input:
        os.close(in_w)
    theirs.close()
    return status, output, got, seconds


def test_carry_answers_pings_and_ends_on_the_servers_close_with_its_code():
    close = server_frame(struct.pack("!H", 1001), 8)
    status, out, got, _ = run_carry(
        [
            server_frame(b"hi", 9)[:3],
            server_frame(b"hi", 9)[3:] + server_frame(b"out")[:1],
            server_frame(b"out")[1:] + close,
        ],
        end_input=False,
    )
    assert (status, out) == (0, b"out")
    assert got == [(10, b"hi"), (8, struct.pack("!H", 1001))]


def test_bytes_that_came_with_the_handshake_come_out_first():
    x = server_frame(b"x")
    status, out, _, _ = run_carry(
        [x[1:] + server_frame(b" world"), server_frame(b"", 8)],
        end_input=False,
        buffered=server_frame(b"hello") + x[:1],  # and a frame's header, in part
    )
    assert (status, out) == (0, b"hellox world")


def test_the_end_of_input_sends_a_close_and_waits_briefly_for_the_servers():
    status, out, got, seconds = run_carry([server_frame(b"bye")], end_input=True, linger=0.3)
    assert (status, out) == (0, b"bye")
    assert got == [(8, struct.pack("!H", 1000))]
    assert 0.2 < seconds < 3  # the server never answered the close


def test_a_message_past_max_frame_ends_the_carrying_with_a_message(capsys):
    huge = bytes([0x82, 127]) + struct.pack("!Q", sshproxy.MAX_FRAME + 1)
    status, out, _, _ = run_carry([huge], end_input=False)
    assert (status, out) == (1, b"")
    assert "at most" in capsys.readouterr().err


def test_the_token_comes_from_a_file_or_the_environment_never_empty(tmp_path, monkeypatch):
    monkeypatch.delenv("GPUPOOL_TOKEN", raising=False)
    with pytest.raises(sshproxy.ProxyError, match="no hub token"):
        sshproxy.read_token(None)
    (tmp_path / "t").write_text("abc\n")
    (tmp_path / "t").chmod(0o600)
    assert sshproxy.read_token(str(tmp_path / "t")) == "abc"
    monkeypatch.setenv("GPUPOOL_TOKEN", "a b")  # would break the request's header
    with pytest.raises(sshproxy.ProxyError):
        sshproxy.read_token(None)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o602, 0o700 | 0o060])
def test_a_token_file_that_others_may_read_or_change_is_refused(tmp_path, mode):
    path = tmp_path / "t"
    path.write_text("abc\n")
    path.chmod(mode)
    with pytest.raises(sshproxy.ProxyError, match=f"chmod 600 {path}"):
        sshproxy.read_token(str(path))
    path.chmod(0o600)
    assert sshproxy.read_token(str(path)) == "abc"


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


def test_a_control_frame_over_125_bytes_or_in_pieces_is_a_protocol_error():
    """RFC 6455 §5.5: a ping, pong or close carries 125 bytes at most, in one frame."""
    for bad in (server_frame(b"p" * 126, 9), bytes([0x09, 1]) + b"p", server_frame(b"c" * 200, 8)):
        with pytest.raises(sshproxy.ProtocolError, match="control frame"):
            sshproxy.next_frame(bytearray(bad[:4]))  # known from the header already
    assert sshproxy.next_frame(bytearray(server_frame(b"p" * 125, 9))) == (9, b"p" * 125)


@pytest.mark.parametrize("bad", [server_frame(b"p" * 126, 9), bytes([0x09, 1]) + b"p"])
def test_a_protocol_error_ends_the_carrying_with_a_1002_close_and_a_message(bad, capsys):
    sends = server_frame(b"before") + bad + server_frame(b"after") + server_frame(b"", 8)
    status, out, got, seconds = run_carry([sends], end_input=False)
    assert status == 1 and b"after" not in out
    assert got == [(8, struct.pack("!H", 1002))]  # no pong: the bad ping is not answered
    assert "control frame" in capsys.readouterr().err
    assert seconds < 3


def carrier(sock: socket.socket, linger: float = 0.2):
    """A _Carrier between ``sock`` and two fresh pipes, run in a thread: (carrier, thread,
    the write end of its input, the read end of its output)."""
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    os.set_blocking(out_w, False)  # as carry() sets it
    c = sshproxy._Carrier(sock, in_r, out_w, b"")
    thread = threading.Thread(target=c.run, args=(linger,), daemon=True)
    thread.start()
    return c, thread, in_w, out_r


def read_exactly(fd: int, n: int, seconds: float = 20) -> bytes:
    out, end = bytearray(), time.monotonic() + seconds
    while len(out) < n and time.monotonic() < end:
        out += os.read(fd, n - len(out))
    return bytes(out)


def test_a_server_that_pings_and_never_reads_finds_one_pong_waiting_at_most():
    """RFC 6455 §5.5.3 lets a client answer the latest ping only: what waits for a server
    that does not read is one pong, not one per ping (2.5 MB of them here)."""
    ours, theirs = socket.socketpair()
    c, thread, in_w, out_r = carrier(ours)
    pings = b"".join(server_frame(b"%08d" % i + b"p" * 117, 9) for i in range(20_000))
    theirs.sendall(pings + server_frame(b"end"))  # never reads a pong
    assert read_exactly(out_r, 3) == b"end"  # every ping before it was read
    time.sleep(0.2)
    assert len(c.up) <= 2 + 4 + 125  # one pong frame
    os.close(in_w)  # ssh's end: the close goes out, whoever reads it
    thread.join(timeout=10)
    assert not thread.is_alive()
    for s in (ours, theirs):
        s.close()


def test_tiny_frames_take_little_memory_while_output_waits_and_come_out_in_order(
    monkeypatch,
):
    """One-byte messages while ssh reads slowly: the proxy stops reading the connection
    when its backlog of real bytes is full, and holds about those bytes, not 200 times
    as much in one queue entry per message."""
    monkeypatch.setattr(sshproxy, "BACKLOG", 64 * 1024)
    rng = random.Random(7)
    payloads = [rng.randbytes(5000 if i % 10_000 == 0 else 1) for i in range(150_000)]
    data = b"".join(payloads)
    ours, theirs = socket.socketpair()
    c, thread, in_w, out_r = carrier(ours)
    sender = threading.Thread(
        target=theirs.sendall, args=(b"".join(server_frame(p) for p in payloads),), daemon=True
    )
    sender.start()
    end = time.monotonic() + 10
    while c.down_size < sshproxy.BACKLOG and time.monotonic() < end:
        time.sleep(0.01)
    time.sleep(0.2)
    assert sshproxy.BACKLOG <= c.down_size < sshproxy.BACKLOG + sshproxy.CHUNK
    entries = list(c.down)  # at once (the carrier's thread runs on)
    held = sum(sys.getsizeof(e) + (len(e) if isinstance(e, memoryview) else 0) for e in entries)
    assert len(entries) < 50 and held < 2 * c.down_size, (len(entries), held, c.down_size)
    assert read_exactly(out_r, len(data)) == data
    sender.join(timeout=10)
    os.close(in_w)
    thread.join(timeout=10)
    assert not thread.is_alive()
    for s in (ours, theirs):
        s.close()


def test_the_end_comes_linger_seconds_after_our_close_however_busy_the_server():
    """A server that never answers our close but pings on: the proxy still ends."""
    ours, theirs = socket.socketpair()
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    os.close(in_w)  # ssh has gone
    stop = threading.Event()

    def ping() -> None:
        while not stop.is_set():
            try:
                theirs.sendall(server_frame(b"", 9) + server_frame(b"x"))
            except OSError:
                return
            time.sleep(0.05)

    threading.Thread(target=ping, daemon=True).start()
    start = time.monotonic()
    status = bounded(lambda: sshproxy.carry(ours, in_r, out_w, linger=0.5), seconds=10)
    seconds = time.monotonic() - start
    stop.set()
    assert status == 0 and 0.4 < seconds < 3
    for fd in (in_r, out_r, out_w):
        os.close(fd)
    theirs.close()


def test_a_server_that_trickles_its_answer_is_given_up_on_in_time():
    """One byte of headers every 50 ms, never their end: the handshake's time is for all
    of it, not for each read."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            try:
                conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nX-Slow: ")
                while not stop.is_set():
                    conn.sendall(b"a")
                    time.sleep(0.05)
            except OSError:
                return

    threading.Thread(target=serve, daemon=True).start()
    url = f"ws://127.0.0.1:{listener.getsockname()[1]}/user/a/gpupool/ssh"

    def attempt() -> Exception | None:
        try:
            sshproxy.handshake(url, "t", "k", timeout=1)
        except sshproxy.ProxyError as e:
            return e
        return None

    start = time.monotonic()
    error = bounded(attempt, seconds=10)
    seconds = time.monotonic() - start
    stop.set()
    listener.close()
    assert "did not answer within 1 s" in str(error) and seconds < 3
