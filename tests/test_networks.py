"""One IP allowlist normaliser (project.networks) for API keys and broker keys."""

import pytest
from django.core.exceptions import ValidationError

from project.networks import normalise_networks


def test_addresses_and_ranges_become_canonical_networks_in_order():
    assert normalise_networks([" 192.0.2.7 ", "2001:DB8:0:0::/32", "198.51.100.0/24", "::1", ""]) == [
        "192.0.2.7/32", "2001:db8::/32", "198.51.100.0/24", "::1/128"]


def test_an_ipv4_mapped_address_or_range_is_written_as_ipv4():
    assert normalise_networks(["::ffff:192.0.2.7", "::ffff:198.51.100.0/120"]) == ["192.0.2.7/32", "198.51.100.0/24"]


@pytest.mark.parametrize(("entries", "message"), [
    (["10.0.0.0/8", "10.0.0.0/8"], "listed twice"),
    (["192.0.2.7", "::ffff:192.0.2.7"], "listed twice"),
    (["0.0.0.0/0"], "every address"),
    (["::/0"], "every address"),
    (["10.0.0.1/8"], "host bits set"),
    (["fe80::1%eth0"], "scoped"),
    (["10.0.0.0/33"], "prefix length"),
    (["example.com"], "not an IPv4 or IPv6 address"),
])
def test_bad_entries_are_refused_naming_the_entry(entries, message):
    with pytest.raises(ValidationError) as refused:
        normalise_networks(entries)
    assert message in " ".join(refused.value.messages)


def test_at_most_the_platforms_hundred_entries():
    with pytest.raises(ValidationError, match="At most 100"):
        normalise_networks([f"10.0.{i // 256}.{i % 256}" for i in range(101)])
