"""https:// url inputs (IMGSIM_ALLOW_HTTPS_URLS=true) against a TLS server on loopback with a
certificate made here: only plain URLs, one name lookup whose checked address is the one
connected to (SNI, certificate and Host keep the name), and one fixed message on failure."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from lambdas.api.handler import make_handler
from pipeline.errors import ApiError
from pipeline.ingest.ingestor import Ingestor
from pipeline.local.api_gateway import LocalApi
from pipeline.lookup.image_inputs import HttpsFetcher, from_url
from tests.helpers import gradient_jpeg

NAME = "images.example.test"
SECRET = "internal-service-says-hello"  # what an internal target answers; must not leak


@dataclass
class TlsServer:
    url_port: int
    ca_file: str
    requests: list[tuple[str, str]] = field(default_factory=list)  # (path, Host header)
    sni: list[str | None] = field(default_factory=list)


def _certificate(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NAME)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(NAME), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[TlsServer]:
    cert_file, key_file = _certificate(tmp_path)
    image = gradient_jpeg()
    seen: list[tuple[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append((self.path, self.headers.get("Host", "")))
            if self.path.startswith("/x.jpg"):
                status, body = 200, image
            elif self.path == "/redirect":
                status, body = 302, b""
            else:
                status, body = 500, SECRET.encode()
            self.send_response(status, SECRET if status != 200 else None)
            if status == 302:
                self.send_header("Location", "https://127.0.0.1/x.jpg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    sni: list[str | None] = []
    context.sni_callback = lambda _sock, name, _ctx: sni.append(name)  # type: ignore[assignment]
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        state = TlsServer(server.server_address[1], str(cert_file), seen, sni)
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def settings(module_stack):
    return replace(module_stack.settings, allow_https_urls=True)


def _loopback_allowed(answers: dict[str, list[str]], tls: TlsServer, **options) -> HttpsFetcher:
    return HttpsFetcher(
        allowed=lambda ip: ip.is_loopback,
        resolve=lambda host, _port: answers[host],
        ca_certs=tls.ca_file,
        **options,
    )


def test_the_fetch_goes_to_the_checked_address_with_the_name_kept(tls_server, settings):
    fetcher = _loopback_allowed({NAME: ["127.0.0.1"]}, tls_server)
    url = f"https://{NAME}:{tls_server.url_port}/x.jpg?size=1"
    assert from_url(url, "url", settings, s3=None, https=fetcher) == gradient_jpeg()
    assert tls_server.requests == [("/x.jpg?size=1", f"{NAME}:{tls_server.url_port}")]
    assert tls_server.sni == [NAME]


def test_the_name_is_resolved_once_so_rebinding_cannot_redirect_the_connection(
    tls_server, settings
):
    # the first answer passes the check (127.0.0.2 plays a public address: nothing listens
    # there); a second lookup would answer 127.0.0.1, where the server is
    answers = iter([["127.0.0.2"], ["127.0.0.1"], ["127.0.0.1"]])
    fetcher = HttpsFetcher(
        allowed=lambda ip: ip == ipaddress.ip_address("127.0.0.2"),
        resolve=lambda _host, _port: next(answers),
        ca_certs=tls_server.ca_file,
        timeout=2,
    )
    with pytest.raises(ApiError) as refused:
        from_url(f"https://{NAME}:{tls_server.url_port}/x.jpg", "url", settings, None, fetcher)
    assert refused.value.status == 400 and refused.value.message == "url could not be fetched"
    assert tls_server.requests == [] and tls_server.sni == []
    assert next(answers) == ["127.0.0.1"]  # one lookup was made, not two


def test_every_resolved_address_must_pass_the_check(tls_server, settings):
    fetcher = HttpsFetcher(
        allowed=lambda ip: ip == ipaddress.ip_address("127.0.0.2"),
        resolve=lambda _host, _port: ["127.0.0.2", "127.0.0.1"],
        ca_certs=tls_server.ca_file,
    )
    with pytest.raises(ApiError) as refused:
        from_url(f"https://{NAME}:{tls_server.url_port}/x.jpg", "url", settings, None, fetcher)
    assert "non-public" in refused.value.message and tls_server.requests == []


@pytest.mark.parametrize("path", ["/internal", "/redirect"])
def test_a_failed_fetch_answers_a_fixed_message(tls_server, settings, path):
    fetcher = _loopback_allowed({NAME: ["127.0.0.1"]}, tls_server)
    with pytest.raises(ApiError) as refused:
        from_url(f"https://{NAME}:{tls_server.url_port}{path}", "url_1", settings, None, fetcher)
    assert (refused.value.status, refused.value.code) == (400, "invalid_url_1")
    assert refused.value.message == "url_1 could not be fetched"
    assert len(tls_server.requests) == 1  # asked once, redirect not followed


def test_a_certificate_for_another_name_is_refused_with_the_same_message(tls_server, settings):
    fetcher = _loopback_allowed({"other.example.test": ["127.0.0.1"]}, tls_server)
    url = f"https://other.example.test:{tls_server.url_port}/x.jpg"
    with pytest.raises(ApiError) as refused:
        from_url(url, "url", settings, None, fetcher)
    assert refused.value.message == "url could not be fetched"
    assert tls_server.requests == [] and tls_server.sni == ["other.example.test"]


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1:{port}\\@8.8.8.8/x.jpg",
        "https://user@8.8.8.8/x.jpg",
        "https://127.0.0.1:{port}@8.8.8.8/x.jpg",
        "https://8.8.8.8\\x.jpg",
        "https://8.8.8.8/x.jpg\r\nHost: 127.0.0.1",
        "https://8.8.8.8/ x.jpg",
        "https://8.8.8.8:99999/x.jpg",
        "https://8.8.8.8:/x.jpg",
        "https:///x.jpg",
        "https://[::1/x.jpg",
        "https://bücher.example/x.jpg",
        "https://" + "a" * 300 + "/x.png",
        "https://" + "a" * 64 + ".example/x.png",
        "https://-a.example/x.png",
        "HTTPS://8.8.8.8/x.jpg",
    ],
)
def test_only_plain_urls_are_fetched(tls_server, settings, url):
    # the default check and resolver: nothing but a refusal, before any connection
    url = url.format(port=tls_server.url_port)
    with pytest.raises(ApiError) as refused:
        from_url(url, "url", settings, s3=None)
    assert refused.value.status == 400 and refused.value.code == "invalid_url"
    assert tls_server.requests == [] and tls_server.sni == []


def test_the_backslash_userinfo_bypass_is_refused_through_the_api(tls_server, settings):
    server = LocalApi(make_handler(Ingestor.from_settings(settings))).start()
    try:
        bypass = f"https://127.0.0.1:{tls_server.url_port}\\@8.8.8.8/x.jpg"
        response = requests.post(f"{server.url}/embed", json={"url": bypass}, timeout=30)
        direct = requests.post(
            f"{server.url}/embed",
            json={"url": f"https://127.0.0.1:{tls_server.url_port}/x.jpg"},
            timeout=30,
        )
    finally:
        server.stop()
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_url"
    assert direct.status_code == 400 and "non-public" in direct.json()["error"]["message"]
    assert tls_server.requests == [] and tls_server.sni == []


def test_the_refusal_names_both_schemes_when_https_is_enabled(settings):
    with pytest.raises(ApiError) as refused:
        from_url("http://example.com/x.jpg", "url", settings, s3=None)
    assert refused.value.message == "url must be an s3:// or https:// URL"
