import hashlib

import pytest
from django.core.exceptions import ValidationError

from broker import keyformat
from broker.validators import address_allowed
from project.logging import redact
from project.networks import normalise_networks


def test_key_names_its_environment_and_carries_256_random_bits():
    key = keyformat.generate("prod")
    assert key.startswith("kw_prod_")
    body = key[len("kw_prod_"):]
    assert len(body) == keyformat.BODY_LENGTH + keyformat.CHECK_LENGTH
    assert 62 ** keyformat.BODY_LENGTH >= 2 ** 256
    assert len({keyformat.generate("prod") for _ in range(50)}) == 50
    assert keyformat.is_well_formed(key)


def test_every_single_character_typo_is_refused_by_the_checksum():
    key = keyformat.generate("staging")
    for position in range(len("kw_"), len(key)):
        for replacement in "0aZ_-":
            if key[position] == replacement:
                continue
            mistyped = key[:position] + replacement + key[position + 1:]
            assert not keyformat.is_well_formed(mistyped), mistyped


def test_swapped_neighbours_and_truncation_are_refused():
    key = keyformat.generate("dev")
    for position in range(len("kw_dev_"), len(key) - 1):
        if key[position] != key[position + 1]:
            swapped = key[:position] + key[position + 1] + key[position] + key[position + 2:]
            assert not keyformat.is_well_formed(swapped)
    assert not keyformat.is_well_formed(key[:-1])
    assert not keyformat.is_well_formed(key + "0")
    assert not keyformat.is_well_formed("Bearer " + key)
    assert not keyformat.is_well_formed("sk_" + key[3:])


def test_environment_label_keeps_the_whole_key_redactable():
    key = keyformat.generate("eu-west-prod")
    assert key.startswith("kw_euwestprod_")
    assert key not in redact(f"calling with {key} now")
    assert key[12:30] not in redact(f"Authorization: Bearer {key}")


def test_only_a_digest_and_a_short_hint_describe_a_key():
    key = keyformat.generate("prod")
    assert keyformat.digest(key) == hashlib.sha256(key.encode()).hexdigest()
    hint = keyformat.hint(key)
    assert hint.startswith("kw_prod_") and hint.endswith(key[-4:])
    assert len(hint.replace("…", "")) <= len("kw_prod_") + 8


def test_networks_are_normalised_and_v6_compressed_and_a_duplicate_is_refused():
    # One normaliser for API keys and broker keys (project.networks): a repeated range is a typo, refused on
    # the field like the API keys' allowlist always did, no longer dropped without a word.
    assert normalise_networks(["203.0.113.7", " 10.0.0.0/8 ", "2001:DB8:0:0::/32", ""]) == [
        "203.0.113.7/32", "10.0.0.0/8", "2001:db8::/32"]
    assert normalise_networks(["::1"]) == ["::1/128"]
    with pytest.raises(ValidationError, match="listed twice"):
        normalise_networks(["10.0.0.0/8", "10.0.0.0/8"])


@pytest.mark.parametrize("bad", ["10.0.0.1/8", "2001:db8::1/32", "300.1.1.1", "example.com", "10.0.0.0/33"])
def test_a_range_with_host_bits_or_garbage_is_refused(bad):
    with pytest.raises(ValidationError) as caught:
        normalise_networks([bad])
    if "/" in bad and bad.startswith(("10.0.0.1", "2001")):
        assert "host bits set" in caught.value.messages[0]


def test_address_matching_covers_v4_v6_and_v4_mapped_v6():
    nets = ["203.0.113.0/24", "2001:db8::/32"]
    assert address_allowed(nets, "203.0.113.9")
    assert address_allowed(nets, "::ffff:203.0.113.9")
    assert address_allowed(nets, "2001:db8::42")
    assert not address_allowed(nets, "198.51.100.1")
    assert not address_allowed(nets, "2001:db9::1")
    assert not address_allowed(nets, None)
    assert address_allowed([], None)
