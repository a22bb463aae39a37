"""Password hashes as legacy databases and directories hold them, each verified by its own prefix.

Supported: argon2id/argon2i (``$argon2id$...``), bcrypt (``$2a$ $2b$ $2y$``),
Django's ``pbkdf2_sha256$ pbkdf2_sha1$ argon2$ bcrypt_sha256$ bcrypt$ scrypt$``,
Werkzeug's ``pbkdf2:<digest>:<iterations>$salt$hex`` and ``scrypt:n:r:p$salt$hex``,
LDAP's ``{SSHA} {SSHA256} {SSHA512}`` and ``{CRYPT}`` (bcrypt, or crypt(3)
SHA-256/512 where the platform has it), and bare glibc ``$6$``/``$5$`` crypt.

Anything else (unsalted MD5/SHA1, Django's ``!`` unusable passwords, an
unknown prefix) never matches, and the log names the format once per process.
Every comparison is constant-time (``hmac.compare_digest``, or the library's
own). Neither a password nor a hash ever reaches the log: only format names do.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import threading
import warnings
from typing import Callable

import bcrypt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = ["cost_class", "hash_format", "needs_rehash", "verify_password"]

log = logging.getLogger("gateway.sources")

_argon2 = PasswordHasher()
MAX_SCRYPT_MEMORY = 256 * 1024 * 1024  # a hash asking for more is refused, not computed
MAX_PBKDF2_ITERATIONS = 10_000_000
BCRYPT_MAX_BYTES = 72  # what bcrypt reads of a password; PHP and Ruby truncate there too

_warned: set[str] = set()
_warned_lock = threading.Lock()


def _warn_once(fmt: str) -> None:
    with _warned_lock:
        if fmt in _warned:
            return
        _warned.add(fmt)
    log.warning("password hash format %r is not accepted: users with such hashes cannot log in", fmt)


def _argon2_verify(encoded: str, password: str) -> bool:
    try:
        return _argon2.verify(encoded, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _bcrypt_verify(encoded: str, password: bytes) -> bool:
    if encoded.startswith("$2y$") or encoded.startswith("$2x$"):
        encoded = "$2b$" + encoded[4:]  # PHP's $2y$ is the same algorithm as $2b$
    try:
        return bcrypt.checkpw(password[:BCRYPT_MAX_BYTES], encoded.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        return False


def _django_pbkdf2(encoded: str, password: str) -> bool:
    algorithm, iterations, salt, expected = encoded.split("$", 3)
    digest = {"pbkdf2_sha256": "sha256", "pbkdf2_sha1": "sha1"}[algorithm]
    rounds = int(iterations)
    if not 0 < rounds <= MAX_PBKDF2_ITERATIONS:
        return False
    derived = hashlib.pbkdf2_hmac(digest, password.encode(), salt.encode(), rounds)
    return hmac.compare_digest(base64.b64encode(derived).decode("ascii").strip(), expected)


def _django_scrypt(encoded: str, password: str) -> bool:
    _, n, salt, r, p, expected = encoded.split("$", 5)
    derived = _scrypt(password, salt, int(n), int(r), int(p))
    return derived is not None and hmac.compare_digest(base64.b64encode(derived).decode("ascii").strip(), expected)


def _scrypt(password: str, salt: str, n: int, r: int, p: int) -> bytes | None:
    if n < 2 or r < 1 or p < 1 or 128 * n * r * p > MAX_SCRYPT_MEMORY:
        return None
    return hashlib.scrypt(password.encode(), salt=salt.encode(), n=n, r=r, p=p, maxmem=MAX_SCRYPT_MEMORY + 1024 * 1024, dklen=64)


def _django_bcrypt_sha256(encoded: str, password: str) -> bool:
    prehashed = binascii.hexlify(hashlib.sha256(password.encode()).digest())
    return _bcrypt_verify(encoded.split("$", 1)[1], prehashed)


def _werkzeug(encoded: str, password: str) -> bool:
    method, salt, expected = encoded.split("$", 2)
    name, *args = method.split(":")
    if name == "pbkdf2":
        if len(args) != 2:
            return False
        digest, rounds = args[0], int(args[1])
        if digest not in {"sha256", "sha512", "sha1"} or not 0 < rounds <= MAX_PBKDF2_ITERATIONS:
            return False
        derived: bytes | None = hashlib.pbkdf2_hmac(digest, password.encode(), salt.encode(), rounds)
    else:
        n, r, p = (int(a) for a in args) if args else (2**15, 8, 1)
        derived = _scrypt(password, salt, n, r, p)
    return derived is not None and hmac.compare_digest(derived.hex(), expected)


def _ssha(encoded: str, password: str) -> bool:
    scheme, _, payload = encoded[1:].partition("}")
    digest = {"SSHA": hashlib.sha1, "SSHA256": hashlib.sha256, "SSHA512": hashlib.sha512}[scheme.upper()]
    raw = base64.b64decode(payload, validate=True)
    size = digest().digest_size
    if len(raw) <= size:
        return False
    expected, salt = raw[:size], raw[size:]
    return hmac.compare_digest(digest(password.encode() + salt).digest(), expected)


def _ldap_crypt(encoded: str, password: str) -> bool:
    value = encoded[len("{CRYPT}"):]
    if value.startswith("$2"):
        return _bcrypt_verify(value, password.encode())
    if not (value.startswith("$5$") or value.startswith("$6$")):
        _warn_once("{CRYPT}" + (value[:3] if value.startswith("$") else "des"))
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import crypt  # the platform's crypt(3); gone in Python 3.13
        except ImportError:
            _warn_once("{CRYPT} (no crypt(3) in this Python)")
            return False
    computed = crypt.crypt(password, value)
    return computed is not None and hmac.compare_digest(computed, value)


Verifier = Callable[[str, str], bool]

# Prefix -> (format name, verifier); the first matching prefix wins, so longer prefixes come first.
_FORMATS: tuple[tuple[str, str, Verifier], ...] = (
    ("$argon2id$", "argon2id", _argon2_verify),
    ("$argon2i$", "argon2i", _argon2_verify),
    ("$2a$", "bcrypt", lambda e, p: _bcrypt_verify(e, p.encode())),
    ("$2b$", "bcrypt", lambda e, p: _bcrypt_verify(e, p.encode())),
    ("$2y$", "bcrypt", lambda e, p: _bcrypt_verify(e, p.encode())),
    ("pbkdf2_sha256$", "django-pbkdf2_sha256", _django_pbkdf2),
    ("pbkdf2_sha1$", "django-pbkdf2_sha1", _django_pbkdf2),
    ("argon2$argon2", "django-argon2", lambda e, p: _argon2_verify(e[len("argon2"):], p)),
    ("bcrypt_sha256$", "django-bcrypt_sha256", _django_bcrypt_sha256),
    ("bcrypt$", "django-bcrypt", lambda e, p: _bcrypt_verify(e[len("bcrypt$"):], p.encode())),
    ("scrypt$", "django-scrypt", _django_scrypt),
    ("pbkdf2:", "werkzeug-pbkdf2", _werkzeug),
    ("scrypt:", "werkzeug-scrypt", _werkzeug),
    ("{SSHA}", "ldap-ssha", _ssha),
    ("{SSHA256}", "ldap-ssha256", _ssha),
    ("{SSHA512}", "ldap-ssha512", _ssha),
    ("{CRYPT}", "ldap-crypt", _ldap_crypt),
    ("$6$", "sha512-crypt", lambda e, p: _ldap_crypt("{CRYPT}" + e, p)),
    ("$5$", "sha256-crypt", lambda e, p: _ldap_crypt("{CRYPT}" + e, p)),
)


def hash_format(encoded: str) -> str | None:
    """The format's name, or None for one that is never accepted."""
    for prefix, name, _ in _FORMATS:
        if encoded.startswith(prefix) or (prefix.startswith("{") and encoded[: len(prefix)].upper() == prefix):
            return name
    return None


def cost_class(encoded: str | None) -> str:
    """The format and its cost parameters, never a salt or digest: hashes of one class cost the same to check.

    ``never`` for a hash no password matches (unusable, unaccepted, empty): checking it costs nothing.
    """
    name = hash_format(encoded) if encoded else None
    if name is None or not encoded:
        return "never"
    try:
        if "argon2" in name:  # [argon2]$argon2id$v=19$m=65536,t=3,p=4$salt$digest
            return encoded.rsplit("$", 2)[0]
        if "bcrypt" in name:  # [bcrypt$]$2b$12$salt+digest
            return encoded.rsplit("$", 1)[0]
        if name.startswith("django-pbkdf2"):  # pbkdf2_sha256$iterations$salt$digest
            return "$".join(encoded.split("$", 2)[:2])
        if name == "django-scrypt":  # scrypt$n$salt$r$p$digest
            parts = encoded.split("$")
            return "$".join([parts[0], parts[1], parts[3], parts[4]])
        if name.startswith("werkzeug"):  # pbkdf2:sha256:600000$salt$digest
            return encoded.split("$", 1)[0]
        if name.endswith("crypt"):  # [{CRYPT}]$6$[rounds=N$]salt$digest, {CRYPT}$2b$12$...
            parts = encoded.split("$")
            variant, cost = parts[1], parts[2]
            return ":".join([name, variant, cost if cost.startswith("rounds=") or variant.startswith("2") else ""])
    except IndexError:
        return name
    return name  # fixed-cost formats ({SSHA})


def _describe(encoded: str) -> str:
    """A name for an unaccepted format, for the one warning: its prefix only, never the hash."""
    if encoded.startswith("!"):
        return "django-unusable (!)"
    if encoded.startswith("{"):
        return encoded[: encoded.find("}") + 1][:16] if "}" in encoded else "{?"
    if encoded.startswith("$"):
        return "$" + encoded[1:].split("$", 1)[0][:12] + "$"
    if "$" in encoded:
        return encoded.split("$", 1)[0][:24] + "$"
    if all(c in "0123456789abcdefABCDEF" for c in encoded):
        return f"unsalted hex ({len(encoded)} digits)"
    return "unknown"


def verify_password(encoded: str | None, password: str) -> bool:
    """Whether ``password`` matches ``encoded``; False for every unaccepted or malformed hash.

    CPU-bound by design (milliseconds to a second): call it from a thread, not the event loop.
    """
    if not encoded:
        return False
    for prefix, _name, verifier in _FORMATS:
        if encoded.startswith(prefix) or (prefix.startswith("{") and encoded[: len(prefix)].upper() == prefix):
            try:
                return verifier(encoded, password)
            except (ValueError, KeyError, binascii.Error, UnicodeError, OverflowError):
                return False  # malformed: never matches
    _warn_once(_describe(encoded))
    return False


def needs_rehash(encoded: str) -> bool:
    """True unless ``encoded`` is an argon2id hash with the current parameters (for ``rehash_on_login``)."""
    bare = encoded[len("argon2"):] if encoded.startswith("argon2$argon2id$") else encoded
    if not bare.startswith("$argon2id$"):
        return True
    try:
        return _argon2.check_needs_rehash(bare)
    except InvalidHashError:
        return True
