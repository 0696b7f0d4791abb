"""gpupool-ssh-proxy over real TLS on loopback: a WebSocket echo server behind a test CA,
and the proxy run as the user runs it (the file alone, ``python3 sshproxy.py``, ssh's
ProxyCommand with pipes for standard input and output)."""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import json
import os
import random
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gpupool import sshproxy
from tests.unit.test_sshproxy import bounded

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MiB = 1024 * 1024
BLOCK = random.Random(3).randbytes(256 * 1024)  # what the server streams, over and over


def _cert(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate | None, ca_key
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    b = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
    )
    if issuer is None:
        b = b.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        usage = dict(key_cert_sign=True, crl_sign=True, digital_signature=False)
    else:
        b = b.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        b = b.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        usage = dict(key_cert_sign=False, crl_sign=False, digital_signature=True)
    b = b.add_extension(
        x509.KeyUsage(
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            encipher_only=False,
            decipher_only=False,
            **usage,
        ),
        critical=True,
    )
    return b.sign(ca_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    """A test CA, a server certificate it signed for 127.0.0.1 and localhost, and the
    proxy saved alone in a folder (nothing of gpupool beside it), as a user would."""
    d = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("gpupool test CA", ca_key, None, ca_key)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = _cert("127.0.0.1", key, ca, ca_key)
    pem = serialization.Encoding.PEM
    (d / "ca.pem").write_bytes(ca.public_bytes(pem))
    (d / "server.pem").write_bytes(leaf.public_bytes(pem))
    (d / "server.key").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (d / "token").write_text("secret-token\n")
    (d / "token").chmod(0o600)  # the proxy refuses a token file others may read
    (d / "id.pub").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKn8 me@laptop\n")
    shutil.copy(sshproxy.__file__, d / "sshproxy.py")
    return {n: d / n for n in ("ca.pem", "server.pem", "server.key", "token", "id.pub")} | {
        "proxy": d / "sshproxy.py"
    }


def server_frame(payload: bytes, opcode: int = 2) -> bytes:
    n = len(payload)
    if n < 126:
        return bytes([0x80 | opcode, n]) + payload
    if n < 1 << 16:
        return bytes([0x80 | opcode, 126]) + struct.pack("!H", n) + payload
    return bytes([0x80 | opcode, 127]) + struct.pack("!Q", n) + payload


def read_client_frame(f) -> tuple[int, bytes] | None:
    """A masked client frame as a server reads it (written apart from the proxy's code)."""
    head = f.read(2)
    if len(head) < 2:
        return None
    assert head[1] & 0x80, "a client frame must be masked"
    n = head[1] & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", f.read(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", f.read(8))
    mask, body = f.read(4), f.read(n)
    assert len(body) == n
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    return head[0] & 0x0F, (int.from_bytes(body, "big") ^ key).to_bytes(n, "big")


class WsServer:
    """One TLS WebSocket connection: the 101 (with ``early`` bytes in the same write, and
    ``then`` a moment later), a ``big`` message sent in small pieces (many TLS records,
    headers split across them), ``stream`` bytes of 256 KiB messages, then an echo of
    every message (unless not ``echo``) with a ping before every ``ping_every``-th; or,
    with ``refuse``, that HTTP answer instead of the 101."""

    def __init__(
        self,
        pki: dict[str, Path],
        *,
        early: bytes = b"",
        then: bytes = b"",
        big: int = 0,
        stream: int = 0,
        ping_every: int = 0,
        echo: bool = True,
        refuse: bytes = b"",
    ) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(pki["server.pem"], pki["server.key"])
        self.early, self.then, self.big, self.stream = early, then, big, stream
        self.ping_every, self.echo, self.refuse = ping_every, echo, refuse
        self.ready = threading.Event()  # the 101 is sent
        self.received = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"wss://127.0.0.1:{self.listener.getsockname()[1]}/user/alice/gpupool/ssh"
        self.request = b""
        self.pings: list[bytes] = []
        self.pongs: list[bytes] = []
        self.close: bytes | None = None
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
            with self.context.wrap_socket(conn, server_side=True) as tls:
                self._talk(tls)
        except BaseException as e:  # join() reports it
            self.errors.append(e)
        finally:
            self.listener.close()

    def _talk(self, tls: ssl.SSLSocket) -> None:
        f = tls.makefile("rb")
        while (line := f.readline()) not in (b"\r\n", b""):
            self.request += line
        if self.refuse:
            tls.sendall(self.refuse)
            return
        nonce = next(
            v.strip()
            for k, _, v in (x.partition(b":") for x in self.request.split(b"\r\n"))
            if k.lower() == b"sec-websocket-key"
        )
        accept = base64.b64encode(hashlib.sha1(nonce + GUID.encode()).digest())
        tls.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n" + self.early
        )
        if self.then:
            time.sleep(0.1)  # another read for the proxy
            tls.sendall(self.then)
        self.ready.set()
        if self.big:
            data = server_frame(random.Random(1).randbytes(self.big))
            for i in range(0, len(data), 997):  # 997: frame headers fall across records
                tls.sendall(data[i : i + 997])
        block = server_frame(BLOCK)
        for _ in range(self.stream // (256 * 1024)):
            tls.sendall(block)
        count = 0
        while (got := read_client_frame(f)) is not None:
            opcode, payload = got
            if opcode == 2:
                count += 1
                self.received += len(payload)
                if self.ping_every and count % self.ping_every == 0:
                    # before the echo: its pong is due before the client can see the echo
                    self.pings.append(b"p%d" % count)
                    tls.sendall(server_frame(self.pings[-1], 9))
                if self.echo:
                    tls.sendall(server_frame(payload))
            elif opcode == 10:
                self.pongs.append(payload)
            elif opcode == 8:
                self.close = payload
                tls.sendall(server_frame(payload, 8))
                return

    def join(self) -> None:
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the server still runs"
        assert not self.errors, self.errors


def answered(pings: list[bytes], pongs: list[bytes]) -> bool:
    """Whether the pongs answer the pings in order, the last one included: a client may
    answer only the latest of the pings that came before it could answer (RFC 6455 §5.5.3)."""
    left = iter(pings)
    return bool(pongs) and pongs[-1] == pings[-1] and all(p in left for p in pongs)


def start_proxy(pki: dict[str, Path], url: str, *extra: str, env: dict | None = None):
    """The proxy file alone, as ssh's ProxyCommand runs it."""
    env = {k: v for k, v in (env or os.environ).items() if k != "GPUPOOL_TOKEN"}
    argv = [sys.executable, str(pki["proxy"]), url, "--token-file", str(pki["token"])]
    argv += ["--key", str(pki["id.pub"]), *extra]
    return subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,
        env=env,
        cwd=pki["proxy"].parent,
    )


def pump(proc: subprocess.Popen, data: bytes, expect: int) -> bytes:
    """Writes ``data`` to the proxy in chunks of random sizes while reading its output,
    concurrently, until ``expect`` bytes came back; then ends its input."""
    seed = random.Random(2)

    def write() -> None:
        i = 0
        while i < len(data):
            n = seed.randint(1, 200_000)
            proc.stdin.write(data[i : i + n])
            i += n

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    watchdog = threading.Timer(60, proc.kill)  # a proxy that hangs fails the test
    watchdog.start()
    out = bytearray()
    try:
        while len(out) < expect and (more := proc.stdout.read(1 << 20)):
            out += more
        writer.join(timeout=30)
        proc.stdin.close()
    finally:
        watchdog.cancel()
    return bytes(out)


def test_megabytes_both_ways_over_tls_come_back_byte_exact_and_pings_get_pongs(pki):
    server = WsServer(pki, ping_every=8)
    proc = start_proxy(pki, server.url, "--cacert", str(pki["ca.pem"]))
    data = os.urandom(8 * MiB)
    start = time.monotonic()
    out = pump(proc, data, len(data))
    seconds = time.monotonic() - start
    assert proc.wait(timeout=30) == 0, proc.stderr.read()
    server.join()
    assert len(out) == len(data) and out == data
    assert answered(server.pings, server.pongs)
    assert server.close == struct.pack("!H", 1000)  # the end of input closed it cleanly
    request = server.request.decode()
    assert "Authorization: token secret-token\r\n" in request
    assert "X-GpuPool-SSH-Key: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKn8 me@laptop\r\n" in request
    print(f"\nTLS loopback echo: {len(data) / MiB / seconds:.0f} MiB/s each way")


def test_bytes_that_come_with_the_101_and_a_message_in_many_records_are_carried(pki):
    ping = server_frame(b"x", 9)
    early = server_frame(b"SSH-2.0-OpenSSH_9.6\r\n") + ping[:1]  # ends inside a header
    server = WsServer(pki, early=early, then=ping[1:], big=MiB)
    proc = start_proxy(pki, server.url, "--cacert", str(pki["ca.pem"]))
    out = pump(proc, b"", 21 + MiB)
    assert proc.wait(timeout=30) == 0, proc.stderr.read()
    server.join()
    assert server.pongs == [b"x"]
    assert out[:21] == b"SSH-2.0-OpenSSH_9.6\r\n"
    assert out[21:] == random.Random(1).randbytes(MiB)


def test_a_refusal_prints_the_hubs_message(pki):
    body = json.dumps({"status": 403, "message": "bob may not reach alice's server"}).encode()
    refuse = b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\n"
    refuse += b"Content-Length: %d\r\n\r\n" % len(body) + body
    server = WsServer(pki, refuse=refuse)
    proc = start_proxy(pki, server.url, "--cacert", str(pki["ca.pem"]))
    _, err = proc.communicate(timeout=30)
    server.join()
    assert proc.returncode == 1
    assert "403 Forbidden: bob may not reach alice's server" in err.decode()


def test_a_server_the_ca_did_not_sign_is_refused_and_ssl_cert_file_trusts_one(pki):
    server = WsServer(pki)
    proc = start_proxy(pki, server.url, env={**os.environ, "SSL_CERT_FILE": os.devnull})
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1 and "CERTIFICATE_VERIFY_FAILED" in err.decode()
    server.thread.join(timeout=30)

    server = WsServer(pki)
    proc = start_proxy(pki, server.url, env={**os.environ, "SSL_CERT_FILE": str(pki["ca.pem"])})
    assert pump(proc, b"hello", 5) == b"hello"
    assert proc.wait(timeout=30) == 0, proc.stderr.read()
    server.join()


def test_output_that_waits_stops_the_reading_and_loses_nothing(pki):
    """Standard output read late: the proxy holds no more than its backlog, stops reading
    the connection, and takes it up again, TLS's own buffer included."""
    server = WsServer(pki, stream=48 * len(BLOCK))
    proc = start_proxy(pki, server.url, "--cacert", str(pki["ca.pem"]))
    assert server.ready.wait(timeout=30)
    time.sleep(0.5)  # the proxy's backlog fills, then the socket's buffers
    out = pump(proc, b"", 48 * len(BLOCK))
    assert proc.wait(timeout=30) == 0, proc.stderr.read()
    server.join()
    assert out == BLOCK * 48


def test_bytes_that_tls_decrypted_but_nobody_took_yet_are_not_forgotten(pki):
    """The 101 and 12 KB after it in one TLS record, of which the handshake reads 4 KiB:
    the rest waits inside OpenSSL, where select cannot see it, and the server says no
    more until the client does."""
    early = server_frame(BLOCK[:12_000])
    server = WsServer(pki, early=early)
    context = ssl.create_default_context(cafile=str(pki["ca.pem"]))
    sock, buffered = sshproxy.handshake(server.url, "t", "k", context=context)
    assert sock.pending() > 0  # type: ignore[attr-defined]
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    out = bytearray()

    def read() -> None:
        while len(out) < 12_000 and (more := os.read(out_r, 1 << 20)):
            out.extend(more)
        os.close(in_w)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    status = bounded(lambda: sshproxy.carry(sock, in_r, out_w, buffered), seconds=10)
    reader.join(timeout=10)
    for fd in (in_r, out_r, out_w):
        os.close(fd)
    server.join()
    assert status == 0 and out == BLOCK[:12_000]


class OneThreadCheck(ssl.SSLSocket):
    """An SSLSocket that notes which threads read and write it."""

    threads: set[int] = set()

    def recv(self, *args, **kwargs):
        self.threads.add(threading.get_ident())
        return super().recv(*args, **kwargs)

    def recv_into(self, *args, **kwargs):
        self.threads.add(threading.get_ident())
        return super().recv_into(*args, **kwargs)

    def send(self, *args, **kwargs):
        self.threads.add(threading.get_ident())
        return super().send(*args, **kwargs)

    def sendall(self, *args, **kwargs):
        self.threads.add(threading.get_ident())
        return super().sendall(*args, **kwargs)


def test_one_thread_alone_reads_and_writes_the_tls_connection(pki):
    """OpenSSL does not allow one connection to be read in one thread while another
    writes it: reading while writing is what the proxy does all the time."""
    server = WsServer(pki, ping_every=4)
    context = ssl.create_default_context(cafile=str(pki["ca.pem"]))
    context.sslsocket_class = OneThreadCheck
    OneThreadCheck.threads = set()
    sock, buffered = sshproxy.handshake(server.url, "t", "k", context=context)
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    data, out, done = os.urandom(2 * MiB), bytearray(), threading.Event()

    def write() -> None:
        with os.fdopen(in_w, "wb") as f:
            f.write(data)
            done.wait(timeout=30)  # every echo (and ping) has come: now the end

    def read() -> None:
        while len(out) < len(data) and (more := os.read(out_r, 1 << 20)):
            out.extend(more)
        done.set()

    threads = [threading.Thread(target=f, daemon=True) for f in (write, read)]
    for t in threads:
        t.start()
    OneThreadCheck.threads = set()  # the handshake's thread does not count
    status = bounded(lambda: sshproxy.carry(sock, in_r, out_w, buffered))
    for t in threads:
        t.join(timeout=30)
    for fd in (in_r, out_r, out_w):
        os.close(fd)
    server.join()
    assert status == 0 and out == data and answered(server.pings, server.pongs)
    assert len(OneThreadCheck.threads) == 1


@pytest.mark.skipif(not os.environ.get("GPUPOOL_BENCH"), reason="a benchmark: GPUPOOL_BENCH=1")
@pytest.mark.parametrize("way", ["down", "up", "echo"])
def test_throughput_over_tls_loopback(pki, way):
    """Prints MiB/s through the proxy over TLS on loopback, the proxy's start left out:
    64 MiB from the server, to it, or to it and back (both ways at once). This Python
    server costs about as much CPU as the proxy, so the proxy alone is faster."""
    size = 64 * MiB
    server = WsServer(pki, stream=size if way == "down" else 0, echo=way == "echo")
    proc = start_proxy(pki, server.url, "--cacert", str(pki["ca.pem"]))
    assert server.ready.wait(timeout=30)
    start = time.monotonic()
    out = pump(proc, b"" if way == "down" else os.urandom(size), 0 if way == "up" else size)
    assert proc.wait(timeout=120) == 0
    seconds = time.monotonic() - start
    server.join()
    assert (len(out), server.received) == {"down": (size, 0), "up": (0, size)}.get(
        way, (size, size)
    )
    print(f"\n{way}: {size / MiB / seconds:.0f} MiB/s")
