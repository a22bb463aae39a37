"""Hash formats no database fixture here writes: LDAP userPassword schemes, argon2i, bcrypt $2a$, broken input."""
from __future__ import annotations

import base64
import hashlib
import logging
import os
import warnings

import bcrypt
import pytest
from argon2 import PasswordHasher, Type

from gateway.sources import hashes
from gateway.sources.hashes import hash_format, needs_rehash, verify_password


def ssha(password: str, digest=hashlib.sha1, scheme: str = "SSHA") -> str:
    salt = os.urandom(8)
    return "{" + scheme + "}" + base64.b64encode(digest(password.encode() + salt).digest() + salt).decode()


def sha512_crypt(password: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt
    return crypt.crypt(password, crypt.mksalt(crypt.METHOD_SHA512))


CASES = {
    "ldap-ssha": lambda pw: ssha(pw),
    "ldap-ssha256": lambda pw: ssha(pw, hashlib.sha256, "SSHA256"),
    "ldap-ssha512": lambda pw: ssha(pw, hashlib.sha512, "SSHA512"),
    "ldap-crypt": lambda pw: "{CRYPT}" + sha512_crypt(pw),
    "sha512-crypt": lambda pw: sha512_crypt(pw),
    "ldap-crypt-bcrypt": lambda pw: "{CRYPT}" + bcrypt.hashpw(pw.encode(), bcrypt.gensalt(4)).decode(),
    "argon2i": lambda pw: PasswordHasher(type=Type.I).hash(pw),
    "argon2id": lambda pw: PasswordHasher().hash(pw),
    "bcrypt-2a": lambda pw: "$2a$" + bcrypt.hashpw(pw.encode(), bcrypt.gensalt(4)).decode()[4:],
}


@pytest.mark.parametrize("name", CASES)
def test_each_format_matches_its_password_only(name):
    encoded = CASES[name]("s3cret pässword")
    assert hash_format(encoded) is not None
    assert verify_password(encoded, "s3cret pässword")
    assert not verify_password(encoded, "s3cret passwort")


def test_lowercase_ldap_scheme_names_are_accepted():
    encoded = ssha("pw")
    assert verify_password("{ssha}" + encoded[len("{SSHA}"):], "pw")


@pytest.mark.parametrize("encoded", [
    "", "!", "!unusable", "5f4dcc3b5aa765d61d8327deb882cf99", "{MD5}X03MO1qnZdYdgyfeuILPmQ==", "{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=",
    "{SSHA}not base64!", "{SSHA}" + base64.b64encode(b"short").decode(), "md5$salt$abc", "sha1$salt$abc",
    "pbkdf2_sha256$notanumber$salt$hash", "pbkdf2_sha256$0$salt$hash", "pbkdf2_sha256$99999999999$salt$hash",
    "scrypt$1048576$salt$8$1$hash", "pbkdf2:md5:1000$salt$abc", "$2b$04$short", "$argon2id$broken",
    "{CRYPT}abJnggxhB/yWI", "{CRYPT}$1$salt$hash", "bcrypt_sha256$", "argon2$argon2id$v=19$junk",
])
def test_unaccepted_and_malformed_hashes_never_match(encoded):
    assert verify_password(encoded, "password") is False


def test_one_warning_per_unaccepted_format_and_no_hash_in_it(caplog):
    hashes._warned.clear()
    with caplog.at_level(logging.WARNING, logger="gateway.sources"):
        for digest in ("5f4dcc3b5aa765d61d8327deb882cf99", "e99a18c428cb38d5f260853678922e03", "{MD5}X03MO1qnZdYdgyfeuILPmQ=="):
            verify_password(digest, "password")
            verify_password(digest, "password")
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2  # unsalted hex (32 digits) once, {MD5} once
    assert "5f4dcc3b" not in caplog.text and "X03MO1" not in caplog.text


def test_needs_rehash_only_for_older_formats():
    assert needs_rehash("pbkdf2_sha256$20000$salt$hash")
    assert needs_rehash("$2y$10$" + "a" * 53)
    assert not needs_rehash(PasswordHasher().hash("pw"))
    assert not needs_rehash("argon2" + PasswordHasher().hash("pw"))
    assert needs_rehash(PasswordHasher(time_cost=1, memory_cost=8192).hash("pw"))
