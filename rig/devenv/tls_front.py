"""A TLS front for the moto server: pgBackRest speaks S3 over HTTPS only, moto serves plain HTTP.

It listens on a loopback port with a throwaway self-signed certificate (made with ``openssl``) and
copies bytes both ways to moto's port, so pgBackRest (``repo1-storage-verify-tls=n``) and boto3 see
the same buckets. Production uses real S3 over TLS; this exists only in the rig.

    python -m devenv.tls_front --listen-port 0 --target-port 5000 --cert c.pem --key k.pem
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ssl
import subprocess
from pathlib import Path

from devenv.services import HOST, Service, ServiceError, port_is_free


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, valid one day."""
    cert, key = folder / "tls-front.crt", folder / "tls-front.key"
    if cert.exists() and key.exists():
        return cert, key
    result = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", f"/CN={HOST}", "-addext", f"subjectAltName=IP:{HOST}",
         "-keyout", str(key), "-out", str(cert)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise ServiceError(f"tls-front: openssl could not make a certificate: {result.stderr.strip()[-200:]}")
    return cert, key


class TlsFront(Service):
    """This module as a process: HTTPS on a free loopback port in front of ``target_port``."""

    name = "tls-front"

    def __init__(self, workdir: Path | str, target_port: int, *, port: int | None = None) -> None:
        super().__init__(workdir, port=port, ready_timeout=15.0)
        self.target_port = target_port

    @property
    def endpoint(self) -> str:
        """``host:port`` as pgBackRest's ``repo1-s3-endpoint`` / ``repo1-storage-port`` take it."""
        return f"{HOST}:{self.port}"

    def binary(self) -> str:
        import sys

        return sys.executable

    def prepare(self) -> None:
        make_certificate(self.workdir)

    def command(self) -> list[str]:
        cert, key = make_certificate(self.workdir)
        return [self.binary(), "-m", "devenv.tls_front", "--listen-port", str(self.port),
                "--target-port", str(self.target_port), "--cert", str(cert), "--key", str(key)]  # fmt: skip

    def is_ready(self) -> bool:
        return not port_is_free(self.port)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _serve(listen_port: int, target_port: int, cert: str, key: str) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            target_reader, target_writer = await asyncio.open_connection(HOST, target_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(_pipe(client_reader, target_writer), _pipe(target_reader, client_writer))

    server = await asyncio.start_server(handle, HOST, listen_port, ssl=context)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen-port", type=int, required=True)
    parser.add_argument("--target-port", type=int, required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args()
    asyncio.run(_serve(args.listen_port, args.target_port, args.cert, args.key))


if __name__ == "__main__":
    main()
