import pytest
from django.core.exceptions import ValidationError

from agents.validators import normalize_allowlist, normalize_hostname


@pytest.mark.parametrize("raw,expected", [
    ("Example.COM", "example.com"),
    ("  app.example.com  ", "app.example.com"),
    ("localhost:3000", "localhost:3000"),
    ("bücher.example", "xn--bcher-kva.example"),
    ("192.168.1.10:8080", "192.168.1.10:8080"),
    ("[::1]:3000", "[::1]:3000"),
    ("example.com.", "example.com"),
])
def test_hostname_is_normalised(raw, expected):
    assert normalize_hostname(raw) == expected


@pytest.mark.parametrize("raw,code", [
    ("https://x.com", "scheme"),
    ("http://x.com:80", "scheme"),
    ("*.x.com", "wildcard"),
    ("x.com/path", "path"),
    ("x.com?q=1", "path"),
    ("x.com:70000", "port"),
    ("x.com:0", "port"),
    ("x.com:", "port"),
    ("x .com", "whitespace"),
    ("user@x.com", "userinfo"),
    ("-bad-.com", "invalid"),
    ("", "empty"),
    ("::1", "invalid"),
])
def test_bad_hostname_is_refused_with_its_reason(raw, code):
    with pytest.raises(ValidationError) as exc:
        normalize_hostname(raw)
    assert exc.value.code == code


def test_allowlist_refuses_eleventh_host():
    with pytest.raises(ValidationError) as exc:
        normalize_allowlist([f"h{i}.example.com" for i in range(11)])
    assert "at most 10" in " ".join(exc.value.messages)


def test_allowlist_accepts_ten_hosts():
    assert len(normalize_allowlist([f"h{i}.example.com" for i in range(10)])) == 10


def test_allowlist_refuses_duplicate_in_other_case():
    with pytest.raises(ValidationError) as exc:
        normalize_allowlist(["App.Example.com", "app.example.COM"])
    assert "duplicates line 1" in exc.value.messages[0]


def test_subdomain_is_its_own_entry():
    assert normalize_allowlist(["example.com", "www.example.com"]) == ["example.com", "www.example.com"]


def test_every_bad_line_is_reported_at_once():
    with pytest.raises(ValidationError) as exc:
        normalize_allowlist(["ok.com", "https://x.com", "*.y.com"])
    assert [m.split(":")[0] for m in exc.value.messages] == ["Line 2", "Line 3"]


@pytest.mark.parametrize("raw,expected", [
    ("straße.de", "xn--strae-oqa.de"),  # IDNA 2008 keeps ß (IDNA 2003 would have made it strasse.de)
    ("STRASSE.DE", "strasse.de"),  # ...which is another host
    ("BÜCHER.Example:8443", "xn--bcher-kva.example:8443"),  # an uppercase IDN: UTS #46 maps it first
    ("XN--STRAE-OQA.DE", "xn--strae-oqa.de"),  # an A-label as typed, checked and lowercased
])
def test_international_hostnames_follow_idna_2008_and_uts46(raw, expected):
    assert normalize_hostname(raw) == expected


@pytest.mark.parametrize("raw,reason", [
    ("☃.example", "“☃” (U+2603) cannot appear in a hostname"),
    ("xn--zz.example", "a label starting with xn-- is not valid punycode"),
])
def test_an_invalid_international_label_is_refused_with_its_reason(raw, reason):
    with pytest.raises(ValidationError) as exc:
        normalize_hostname(raw)
    assert exc.value.code == "invalid"
    assert exc.value.messages == [f"“{raw}” is not a valid hostname: {reason}."]


def test_ascii_hostnames_keep_their_rules():
    # Only names with non-ASCII or xn-- labels go through IDNA 2008, whose hyphen rule would refuse this one.
    assert normalize_hostname("r3--sn.example.com") == "r3--sn.example.com"
