"""Single-use tokens for speech clients (``POST /v1/single-use-token/{token_type}``), and their one use.

The platform documents the token as "time bound ... expires after 15 minutes. Will be consumed on use." The
emulator records each token it mints; ``single_use_token_use`` (or the control route
``POST /_emulator/single-use-token/use``) plays the speech endpoint a browser or app would open with it: the
first use within 15 minutes succeeds, a second use, an expired token or a token of another type is refused.
"""

from __future__ import annotations

from typing import Any

from .common import ApiError, Call, invalid, random_id
from .core import EmulatorCore, Reply, route

TOKEN_TYPES = ("realtime_scribe", "batch_scribe", "tts_websocket")
TOKEN_TTL_SECONDS = 15 * 60
# UNCONFIRMED which permission the platform asks of the key; the emulator accepts either speech scope.
SPEECH_SCOPES = ("text_to_speech", "speech_to_text")


class SpeechTokenRoutes(EmulatorCore):
    def _reset_resources(self) -> None:
        super()._reset_resources()
        # token -> {"type", "expires" (unix seconds), "used" (bool)}
        self._single_use_tokens: dict[str, dict[str, Any]] = {}

    @route("POST", "/v1/single-use-token/{token_type}", scopes=SPEECH_SCOPES)
    def _single_use_token(self, call: Call) -> Reply:
        token_type = call.args["token_type"]
        if token_type not in TOKEN_TYPES:
            raise invalid(("path", "token_type"), "Input should be 'realtime_scribe', 'batch_scribe' or "
                          "'tts_websocket'", "enum", token_type)
        token = random_id("sutkn_", 32)
        self._single_use_tokens[token] = {"type": token_type, "expires": self.clock() + TOKEN_TTL_SECONDS,
                                          "used": False}
        return 200, {"token": token}

    def single_use_token_use(self, token: str, token_type: str | None = None) -> tuple[bool, str]:
        """Open a speech connection with `token`: (accepted, reason). Consumes the token on success."""
        with self._lock:
            record = self._single_use_tokens.get(token)
            if record is None:
                return False, "unknown_token"
            if token_type is not None and record["type"] != token_type:
                return False, "wrong_token_type"
            if record["used"]:
                return False, "token_already_used"
            if record["expires"] <= self.clock():
                return False, "token_expired"
            record["used"] = True
            return True, "ok"

    def _control(self, method: str, path: str, body: Any) -> Reply:
        if path.removeprefix("/_emulator/").strip("/") == "single-use-token/use" and method == "POST":
            if not isinstance(body, dict) or not isinstance(body.get("token"), str):
                raise ApiError(400, {"detail": "bad emulator control request: token required"})
            accepted, reason = self.single_use_token_use(body["token"], body.get("token_type"))
            return (200, {"accepted": True}) if accepted else (401, {"accepted": False, "reason": reason})
        return super()._control(method, path, body)
