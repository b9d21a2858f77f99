"""A local stand-in for Google's OIDC issuer: real RSA keys, real JWTs, certificates over HTTP.

Google's certificate endpoint cannot be reached from here, so tests point
``GOOGLE_CERTS_URL`` at this server and sign tokens with its key.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt


class OidcIssuer:
    """Serves ``{kid: PEM certificate}`` like Google's v1 certs endpoint and mints tokens."""

    def __init__(self) -> None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-issuer")])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256())
        )
        self.kid = "test-kid"
        self._certs = {self.kid: cert.public_bytes(serialization.Encoding.PEM).decode()}
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        self._signer = crypt.RSASigner.from_string(pem, key_id=self.kid)
        certs = json.dumps(self._certs).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(certs)))
                self.end_headers()
                self.wfile.write(certs)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.certs_url = f"http://127.0.0.1:{self._server.server_port}/oauth2/v1/certs"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def token(
        self,
        *,
        audience: str,
        email: str,
        issuer: str = "https://accounts.google.com",
        email_verified: bool = True,
        lifetime: int = 3600,
    ) -> str:
        """A signed ID token as Google would mint for ``email``."""
        now = int(time.time())
        claims = {
            "iss": issuer,
            "aud": audience,
            "email": email,
            "email_verified": email_verified,
            "sub": "1234567890",
            "iat": now - 5,
            "exp": now + lifetime,
        }
        return jwt.encode(self._signer, claims).decode()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
