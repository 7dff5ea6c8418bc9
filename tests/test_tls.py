"""HTTPS with throwaway certificates (trustme): server certificates, encrypted keys, client
certificates, and clear errors for unusable files."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import pytest
import trustme

from tests.serverproc import TIMEOUT, ServerProcess, run_cli


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def files(ca: trustme.CA, tmp_path: Path) -> dict[str, Path]:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    paths = {name: tmp_path / f"{name}.pem" for name in ("ca", "cert", "key", "chain")}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    cert.private_key_pem.write_to_path(str(paths["key"]))
    cert.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    for blob in cert.cert_chain_pems:
        blob.write_to_path(str(paths["chain"]), append=True)
    return paths


@pytest.mark.parametrize("http", ["h11", "httptools"])
def test_https_serves_with_the_https_scheme(files: dict[str, Path], http: str) -> None:
    args = ("--ssl-certfile", str(files["chain"]), "--ssl-keyfile", str(files["key"]))
    with ServerProcess("tests.apps:app", *args, "--http", http) as server:
        server.start()
        assert server.url.startswith("https://127.0.0.1:")
        with httpx.Client(verify=ssl.create_default_context(cafile=files["ca"])) as client:
            scope = client.get(server.url + "/scope", timeout=TIMEOUT).json()
            assert scope["scheme"] == "https"
            body = b"x" * 300_000
            assert client.post(server.url + "/echo", content=body, timeout=TIMEOUT).content == body
        assert server.stop() == 0


def test_encrypted_key_with_its_password(ca: trustme.CA, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    cert = ca.issue_cert("127.0.0.1")
    key = serialization.load_pem_private_key(cert.private_key_pem.bytes(), password=None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"s3cret"),
    )
    (tmp_path / "key.pem").write_bytes(encrypted)
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    args = [
        "--ssl-certfile",
        str(tmp_path / "cert.pem"),
        "--ssl-keyfile",
        str(tmp_path / "key.pem"),
    ]
    with ServerProcess("tests.apps:app", *args, "--ssl-keyfile-password", "s3cret") as server:
        server.start()
        verify = ssl.create_default_context(cafile=tmp_path / "ca.pem")
        assert httpx.get(server.url + "/pid", verify=verify, timeout=TIMEOUT).status_code == 200
        assert server.stop() == 0
    wrong = run_cli("tests.apps:app", "--port", "0", *args, "--ssl-keyfile-password", "nope")
    assert wrong.returncode == 2
    assert wrong.stderr.startswith(f"asgisup: error: --ssl-certfile {tmp_path / 'cert.pem'}: ")


def test_client_certificates_when_required(ca: trustme.CA, files: dict[str, Path]) -> None:
    client_cert = ca.issue_cert("client@example")
    pem = files["ca"].parent / "client.pem"
    client_cert.private_key_and_cert_chain_pem.write_to_path(str(pem))
    args = ("--ssl-certfile", str(files["chain"]), "--ssl-keyfile", str(files["key"]))
    tls = ("--ssl-ca-certs", str(files["ca"]), "--ssl-cert-reqs", "required")
    with ServerProcess("tests.apps:app", *args, *tls) as server:
        server.start()
        context = ssl.create_default_context(cafile=files["ca"])
        with pytest.raises(httpx.HTTPError):  # no client certificate: the handshake fails
            httpx.get(server.url + "/pid", verify=context, timeout=TIMEOUT)
        context.load_cert_chain(pem)
        assert httpx.get(server.url + "/pid", verify=context, timeout=TIMEOUT).status_code == 200
        assert server.stop() == 0
        assert "Traceback" not in server.log


def test_unusable_tls_options_are_one_line_each(files: dict[str, Path], tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    cases = {
        ("--ssl-certfile", str(missing)): f"--ssl-certfile {missing}: cannot load",
        ("--ssl-keyfile", str(files["key"])): "--ssl-keyfile: needs --ssl-certfile too",
        ("--ssl-certfile", str(files["chain"]), "--ssl-keyfile", str(files["key"]),
         "--ssl-ciphers", "NO-SUCH-CIPHER"): "--ssl-ciphers: no cipher matches",
        ("--ssl-cert-reqs", "maybe"): "--ssl-cert-reqs: expected one of none, optional",
    }  # fmt: skip
    for args, shown in cases.items():
        result = run_cli("tests.apps:app", "--port", "0", *args)
        assert result.returncode == 2, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert result.stderr.startswith(f"asgisup: error: {shown}"), result.stderr


async def test_websocket_over_tls_has_the_wss_scheme(files: dict[str, Path]) -> None:
    import json

    from websockets.asyncio.client import connect

    args = ("--ssl-certfile", str(files["chain"]), "--ssl-keyfile", str(files["key"]))
    with ServerProcess("tests.wsapps:app", *args) as server:
        server.start()
        url = server.url.replace("https://", "wss://") + "/scope"
        context = ssl.create_default_context(cafile=files["ca"])
        async with connect(url, ssl=context, open_timeout=TIMEOUT) as ws:
            assert json.loads(await ws.recv())["scheme"] == "wss"
        assert server.stop() == 0
