"""project.platform.jsonstream and PlatformClient.iter_service_accounts: the service-account list (every key inline,
no paging on the platform) read account by account as the body arrives."""

from __future__ import annotations

import json

import httpx
import pytest

from project.platform.client import PlatformClient
from project.platform.emulator import Emulator
from project.platform.errors import Unavailable
from project.platform.jsonstream import iter_member_items

ADMIN_KEY = "sk_jsonstream_admin_key_0000000000000000000000000001"
DOC = {"before": [1, {"a": "é☃"}], "items": [{"id": n, "keys": [{"k": "é" * n, "n": 1.5e3}] * (n % 4)}
                                              for n in range(40)], "after": 12345}


@pytest.mark.parametrize("size", [1, 3, 7, 100, 10**6])
@pytest.mark.parametrize("indent", [None, 2])
def test_items_whatever_the_chunk_boundaries(size: int, indent: int | None) -> None:
    raw = json.dumps(DOC, indent=indent, ensure_ascii=False).encode()
    chunks = [raw[i:i + size] for i in range(0, len(raw), size)]
    assert list(iter_member_items(chunks, "items")) == DOC["items"]


@pytest.mark.parametrize("body", [b'{"other": 1}', b"[1]", b'{"items": [1,', b'{"items": [1]} x', b"", b'{"items": 3}'])
def test_not_the_expected_document_is_a_value_error(body: bytes) -> None:
    with pytest.raises(ValueError):
        list(iter_member_items([body], "items"))


def test_iter_service_accounts_reads_what_the_list_reads_in_one_call() -> None:
    emulator = Emulator(api_key=ADMIN_KEY, max_service_accounts=3)
    with PlatformClient("https://api.test", ADMIN_KEY, transport=httpx.MockTransport(emulator.handle)) as client:
        for n in range(3):
            sa_id = client.create_service_account(name=f"sa-{n}")
            for k in range(n + 1):
                client.create_api_key(sa_id, name=f"key {n}.{k}", permissions=["convai_read"])
        before = client.calls
        streamed = list(client.iter_service_accounts())
        assert client.calls == before + 1
        assert streamed == client.list_service_accounts()
        assert [len(a["api-keys"]) for a in streamed] == [1, 2, 3]


def test_iter_service_accounts_answers_a_broken_body_as_unavailable() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=b'{"service-accounts": [{"a": '))
    with PlatformClient("https://api.test", ADMIN_KEY, transport=transport) as client, \
            pytest.raises(Unavailable) as caught:
        list(client.iter_service_accounts())
    assert caught.value.code == "invalid_response"
