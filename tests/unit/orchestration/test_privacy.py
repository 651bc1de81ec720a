import hashlib

import pytest

from orchestration.store.privacy import normalize_customer_id, pseudonymize, pseudonymize_session


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("17850.0", "17850"), (" 17850 ", "17850"), ("17850.00", "17850"), ("A-17.5", "A-17.5"), ("u1", "u1"), (17850, "17850")],
)
def test_normalize_customer_id(raw, expected):
    assert normalize_customer_id(raw) == expected


def test_pseudonymize_is_keyed_sha256_prefix():
    expected = "u_" + hashlib.sha256(b"secret|17850").hexdigest()[:16]
    assert pseudonymize("17850.0", "secret") == expected
    assert pseudonymize("17850", "secret") == expected
    assert pseudonymize("17850", "other") != expected


def test_a_session_key_is_keyed_and_never_a_customer_key():
    expected = "s_" + hashlib.sha256(b"secret|session:web-7").hexdigest()[:16]
    assert pseudonymize_session(" web-7 ", "secret") == expected
    # The same text as a customer id and as a session id gives two different users.
    assert pseudonymize("web-7", "secret")[2:] != expected[2:] and pseudonymize("web-7", "secret")[:2] == "u_"
