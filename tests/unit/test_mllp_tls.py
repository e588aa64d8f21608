"""TLS and mutual TLS on the MLLP listener, with a CA, server and client certificates minted here."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from connectors.mllp.connection import MllpServer, tls_context
from connectors.mllp.framing import frame
from connectors.mllp.listener import MllpListener
from connectors.mllp.sources import SourcesFile, parse_sources
from hub.settings import Settings
from tests.unit.test_mllp_connection import SlowWriter, message, msa, read_acks


def _cert(cn: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
          ca: bool = False) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    issuer_name, issuer_key = issuer or (name, key)
    now = dt.datetime.now(dt.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
               .not_valid_after(now + dt.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                                     x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[str, str]:
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.with_suffix(".key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))
    return str(path.with_suffix(".crt")), str(path.with_suffix(".key"))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    d = tmp_path_factory.mktemp("pki")
    ca_key, rogue_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _cert("HSSK test CA", ca_key, None, ca=True)
    rogue_ca = _cert("Rogue CA", rogue_key, None, ca=True)
    out: dict[str, object] = {"ca": _write(d / "ca", ca, ca_key)[0]}
    for name, cn, issuer in (("server", "localhost", (ca.subject, ca_key)),
                             ("choray", "his.choray.example", (ca.subject, ca_key)),
                             ("tudu", "his.tudu.example", (ca.subject, ca_key)),
                             ("rogue", "his.choray.example", (rogue_ca.subject, rogue_key))):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(cn, key, issuer)
        out[name] = _write(d / name, cert, key)
        out[name + "_sha256"] = cert.fingerprint(hashes.SHA256()).hex()
    return out


async def _server(pki: dict[str, object], writer: SlowWriter) -> tuple[MllpServer, int]:
    sources = SourcesFile(None)
    sources.current = parse_sources({"facility": [{"code": "79048", "tls_client_sha256": pki["choray_sha256"]}]})
    server = MllpServer(MllpListener(Settings(), writer, sources))
    cert, key = pki["server"]
    listening = await server.listen("127.0.0.1", 0, tls_context(cert, key, pki["ca"]))
    return server, listening.sockets[0].getsockname()[1]


def _client(pki: dict[str, object], who: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=pki["ca"])
    if who:
        context.load_cert_chain(*pki[who])
    return context


async def test_mutual_tls_with_the_facility_certificate_is_accepted(pki: dict[str, object]) -> None:
    writer = SlowWriter()
    server, port = await _server(pki, writer)
    reader, w = await asyncio.open_connection("127.0.0.1", port, ssl=_client(pki, "choray"), server_hostname="localhost")
    w.write(frame(message("T1")))
    assert msa((await read_acks(reader, 1))[0]) == ["AA", "T1"]
    assert writer.written[0][1] == message("T1")
    w.close()
    await server.shutdown(1)


async def test_certificate_of_another_facility_gets_ar(pki: dict[str, object]) -> None:
    writer = SlowWriter()
    server, port = await _server(pki, writer)
    reader, w = await asyncio.open_connection("127.0.0.1", port, ssl=_client(pki, "tudu"), server_hostname="localhost")
    w.write(frame(message("T2")))
    ack = (await read_acks(reader, 1))[0]
    assert msa(ack) == ["AR", "T2"] and b"certificate" in ack
    assert writer.written == []
    w.close()
    await server.shutdown(1)


@pytest.mark.parametrize("who", [None, "rogue"])
async def test_no_client_certificate_or_one_from_another_ca_is_refused_in_the_handshake(
        pki: dict[str, object], who: str | None) -> None:
    writer = SlowWriter()
    server, port = await _server(pki, writer)
    with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
        reader, w = await asyncio.open_connection("127.0.0.1", port, ssl=_client(pki, who), server_hostname="localhost")
        try:
            w.write(frame(message("T3")))
            data = await asyncio.wait_for(reader.read(1), 5)  # TLS 1.3 reports the refusal on first read
            if not data:
                raise ConnectionError("closed by the server")
        finally:
            w.close()
    assert writer.written == []
    await server.shutdown(1)
