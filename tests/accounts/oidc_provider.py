"""A small OpenID provider on loopback, for the sign-in tests (a real process speaking HTTP, not a mock).

Run: `python tests/accounts/oidc_provider.py --client-id ID --client-secret SECRET` prints `READY <port>` and serves
until killed. It implements the authorization code flow with PKCE (S256 only) and signs ID tokens with RS256 by
joserfc, publishing its key at /jwks:

- GET /.well-known/openid-configuration, /jwks, /userinfo (Bearer);
- GET /authorize: a page with one "Sign in as" button per user (the browser tests press one); with
  `login_hint=<sub>` it signs that user in at once (the test-client tests); POST /authorize is the button;
- POST /token: checks the client's secret, the code (once), the redirect URI and the PKCE verifier;
- POST /_control/users {sub: {email, groups, amr, ...}} sets who exists; POST /_control/config sets misbehaviour
  for the refusal tests: {"id_token_issuer": URL} signs tokens naming another issuer, {"foreign_key": true} signs
  with a key the provider never published (both: what a token from another provider looks like).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import html
import json
import secrets
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

from joserfc import jwt
from joserfc.jwk import RSAKey


class Provider:
    def __init__(self, client_id: str, client_secret: str) -> None:
        self.client_id, self.client_secret = client_id, client_secret
        self.key = RSAKey.generate_key(2048, parameters={"kid": "provider-key", "use": "sig", "alg": "RS256"})
        self.foreign = RSAKey.generate_key(2048, parameters={"kid": "provider-key", "use": "sig", "alg": "RS256"})
        self.users: dict[str, dict[str, Any]] = {}
        self.config: dict[str, Any] = {}
        self.codes: dict[str, dict[str, Any]] = {}
        self.tokens: dict[str, str] = {}
        self.lock = threading.Lock()
        self.issuer = ""

    def id_token(self, grant: dict[str, Any]) -> str:
        user = self.users[grant["sub"]]
        now = int(time.time())
        claims = {"iss": self.config.get("id_token_issuer") or self.issuer, "sub": grant["sub"],
                  "aud": self.client_id, "iat": now, "exp": now + 300, "nonce": grant["nonce"],
                  "email": user.get("email"), "amr": user.get("amr", ["pwd"])}
        key = self.foreign if self.config.get("foreign_key") else self.key
        return jwt.encode({"alg": "RS256", "kid": "provider-key"}, claims, key)


def make_handler(provider: Provider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def _send(self, status: int, body: Any = b"", content_type: str = "application/json",
                  headers: dict[str, str] | None = None) -> None:
            if not isinstance(body, bytes):
                body = json.dumps(body).encode() if content_type == "application/json" else str(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def _form(self) -> dict[str, str]:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode()
            if self.headers.get("Content-Type", "").startswith("application/json"):
                return json.loads(raw or "{}")
            return {k: v[0] for k, v in parse_qs(raw).items()}

        def do_GET(self) -> None:  # noqa: N802
            url = urlparse(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            if url.path == "/.well-known/openid-configuration":
                base = provider.issuer
                return self._send(200, {
                    "issuer": base, "authorization_endpoint": f"{base}/authorize", "token_endpoint": f"{base}/token",
                    "userinfo_endpoint": f"{base}/userinfo", "jwks_uri": f"{base}/jwks",
                    "response_types_supported": ["code"], "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["RS256"], "code_challenge_methods_supported": ["S256"],
                    "scopes_supported": ["openid", "email", "profile"]})
            if url.path == "/jwks":
                return self._send(200, {"keys": [provider.key.as_dict(private=False)]})
            if url.path == "/userinfo":
                token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                sub = provider.tokens.get(token)
                if sub is None:
                    return self._send(401, {"error": "invalid_token"})
                user = provider.users[sub]
                return self._send(200, {"sub": sub, "email": user.get("email"), "email_verified": True,
                                        "given_name": user.get("given_name", ""), "groups": user.get("groups", [])})
            if url.path == "/authorize":
                return self._authorize(query, query.get("login_hint"))
            return self._send(404, {"error": "not_found"})

        def _authorize(self, params: dict[str, str], sub: str | None) -> None:
            if params.get("client_id") != provider.client_id or params.get("response_type") != "code":
                return self._send(400, {"error": "invalid_request"})
            if params.get("code_challenge_method") != "S256" or not params.get("code_challenge"):
                return self._send(400, {"error": "invalid_request", "error_description": "PKCE S256 required"})
            if sub is None:
                keep = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                               for k, v in params.items())
                buttons = "".join(f'<button name="user" value="{html.escape(s)}">Sign in as {html.escape(u["email"])}'
                                  "</button>" for s, u in provider.users.items())
                page = f"<!doctype html><title>Loopback provider</title><form method=post>{keep}{buttons}</form>"
                return self._send(200, page, "text/html")
            if sub not in provider.users:
                return self._send(400, {"error": "unknown user"})
            code = secrets.token_urlsafe(24)
            with provider.lock:
                provider.codes[code] = {"sub": sub, "nonce": params.get("nonce"),
                                        "redirect_uri": params["redirect_uri"], "challenge": params["code_challenge"]}
            target = f"{params['redirect_uri']}?{urlencode({'code': code, 'state': params.get('state', '')})}"
            return self._send(302, b"", "text/plain", {"Location": target})

        def do_POST(self) -> None:  # noqa: N802
            url = urlparse(self.path)
            form = self._form()
            if url.path == "/authorize":
                sub = form.pop("user", None)
                return self._authorize(form, sub)
            if url.path == "/token":
                return self._token(form)
            if url.path == "/_control/users":
                provider.users = form
                return self._send(200, {"ok": True})
            if url.path == "/_control/config":
                provider.config = form
                return self._send(200, {"ok": True})
            return self._send(404, {"error": "not_found"})

        def _token(self, form: dict[str, str]) -> None:
            if form.get("client_id") != provider.client_id or form.get("client_secret") != provider.client_secret:
                return self._send(401, {"error": "invalid_client"})
            with provider.lock:
                grant = provider.codes.pop(form.get("code", ""), None)
            if grant is None or form.get("grant_type") != "authorization_code":
                return self._send(400, {"error": "invalid_grant"})
            if form.get("redirect_uri") != grant["redirect_uri"]:
                return self._send(400, {"error": "invalid_grant", "error_description": "redirect_uri"})
            verifier = form.get("code_verifier", "")
            challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if challenge != grant["challenge"]:
                return self._send(400, {"error": "invalid_grant", "error_description": "PKCE"})
            access_token = secrets.token_urlsafe(24)
            provider.tokens[access_token] = grant["sub"]
            return self._send(200, {"access_token": access_token, "token_type": "Bearer", "expires_in": 300,
                                    "id_token": provider.id_token(grant)})

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--client-secret", required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    provider = Provider(args.client_id, args.client_secret)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(provider))
    provider.issuer = f"http://127.0.0.1:{server.server_address[1]}"
    print(f"READY {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
