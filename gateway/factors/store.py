"""The durable credentials of users: TOTP secrets (sealed) and recovery codes (argon2 hashes), in the database.

Every instance reads and writes the same rows, and a restart loses nothing. Secrets
are sealed (``sealing``) with the row's subject and kind as associated data, so a
row copied to another user does not open; a secret sealed under an older key is
re-sealed under the active one the next time it is read. Single use of a recovery
code is the database's decision: the ``DELETE`` that removes it changes one row for
exactly one caller.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from gateway.config.factors import CredentialStoreSettings
from gateway.factors.database import Database, open_database
from gateway.factors.grace import GraceRecords
from gateway.factors.migrations import upgrade
from gateway.factors.sealing import Sealer

__all__ = ["CredentialStore", "Authenticator"]

TOTP, PENDING, RECOVERY, WEBAUTHN = "totp", "totp_pending", "recovery", "webauthn"
ONE = "default"  # the name of a user's one TOTP row


def _context(subject: str, kind: str) -> str:
    return f"{subject}\0{kind}"


def _digest(credential_id: str) -> str:
    return hashlib.sha256(credential_id.encode()).hexdigest()


@dataclass(frozen=True)
class Authenticator:
    """One registered WebAuthn credential (binary values base64url, as the browser sends them)."""

    credential_id: str
    subject: str
    name: str
    public_key: str
    sign_count: int
    aaguid: str
    transports: tuple[str, ...]
    multi_device: bool
    created_at: int
    last_used_at: int | None


class CredentialStore:
    def __init__(self, db: Database, sealer: Sealer) -> None:
        self.db = db
        self.sealer = sealer
        self.grace = GraceRecords(db)  # second_factor.grace_period: when a required user first logged in without a factor

    @classmethod
    def from_config(cls, settings: CredentialStoreSettings) -> "CredentialStore":
        return cls(open_database(settings.url, settings.pool_size, settings.timeout), Sealer(settings.keys))

    async def start(self) -> int:
        """Create or migrate the schema (on every start: docs/second-factor.md); the schema version."""
        return await upgrade(self.db)

    async def close(self) -> None:
        await self.db.close()

    # -- what a user has ------------------------------------------------------------

    async def methods(self, subject: str) -> list[str]:
        """The user's confirmed second factors, in a fixed order (``totp``, ``webauthn``, ``recovery``)."""
        rows = await self.db.fetch("SELECT DISTINCT kind FROM gw_credentials WHERE subject = :subject", subject=subject)
        kinds = {r["kind"] for r in rows}
        if await self.authenticators(subject):
            kinds.add(WEBAUTHN)
        return [k for k in (TOTP, WEBAUTHN, RECOVERY) if k in kinds]

    # -- TOTP -----------------------------------------------------------------------

    async def _insert(self, subject: str, kind: str, name: str, secret: str) -> None:
        await self.db.execute(
            "INSERT INTO gw_credentials (subject, kind, name, secret, created_at) VALUES (:subject, :kind, :name, :secret, :now)",
            subject=subject, kind=kind, name=name, secret=secret, now=int(time.time()),
        )

    async def _delete(self, subject: str, kind: str, name: str | None = None) -> int:
        if name is None:
            return await self.db.execute("DELETE FROM gw_credentials WHERE subject = :subject AND kind = :kind",
                                         subject=subject, kind=kind)
        return await self.db.execute("DELETE FROM gw_credentials WHERE subject = :subject AND kind = :kind AND name = :name",
                                     subject=subject, kind=kind, name=name)

    async def _secret(self, subject: str, kind: str) -> str | None:
        rows = await self.db.fetch("SELECT secret FROM gw_credentials WHERE subject = :subject AND kind = :kind AND name = :name",
                                   subject=subject, kind=kind, name=ONE)
        return str(rows[0]["secret"]) if rows else None

    async def put_pending_totp(self, subject: str, secret: str) -> None:
        """An enrolment begun: the secret waits, sealed, for its first valid code (a new one replaces it)."""
        await self._delete(subject, PENDING)
        await self._insert(subject, PENDING, ONE, self.sealer.seal(secret.encode(), _context(subject, PENDING)))

    async def pending_totp(self, subject: str) -> str | None:
        sealed = await self._secret(subject, PENDING)
        return None if sealed is None else self.sealer.open(sealed, _context(subject, PENDING)).decode()

    async def activate_totp(self, subject: str, secret: str) -> None:
        """The pending secret confirmed: it replaces the user's TOTP secret."""
        await self._delete(subject, TOTP)
        await self._insert(subject, TOTP, ONE, self.sealer.seal(secret.encode(), _context(subject, TOTP)))
        await self._delete(subject, PENDING)

    async def totp_secret(self, subject: str) -> str | None:
        """The user's confirmed TOTP secret, re-sealed under the active key if an older key sealed it."""
        sealed = await self._secret(subject, TOTP)
        if sealed is None:
            return None
        secret = self.sealer.open(sealed, _context(subject, TOTP)).decode()
        if self.sealer.needs_reseal(sealed):
            await self.db.execute(
                "UPDATE gw_credentials SET secret = :new WHERE subject = :subject AND kind = :kind AND name = :name AND secret = :old",
                new=self.sealer.seal(secret.encode(), _context(subject, TOTP)), subject=subject, kind=TOTP, name=ONE, old=sealed,
            )
        return secret

    async def remove_totp(self, subject: str) -> bool:
        return await self._delete(subject, TOTP) > 0

    # -- recovery codes -------------------------------------------------------------

    async def replace_recovery(self, subject: str, hashes: list[tuple[str, str]]) -> None:
        """A new set of (name, hash): every earlier code stops working."""
        await self._delete(subject, RECOVERY)
        for name, hashed in hashes:
            await self._insert(subject, RECOVERY, name, hashed)

    async def recovery_hashes(self, subject: str) -> list[tuple[str, str]]:
        rows = await self.db.fetch("SELECT name, secret FROM gw_credentials WHERE subject = :subject AND kind = :kind",
                                   subject=subject, kind=RECOVERY)
        return sorted((str(r["name"]), str(r["secret"])) for r in rows)

    async def spend_recovery(self, subject: str, name: str) -> bool:
        """True for exactly one caller: the code is gone after it."""
        return await self._delete(subject, RECOVERY, name) == 1

    async def remove_all(self, subject: str) -> None:
        """Every credential of the user (an operator's reset)."""
        await self.db.execute("DELETE FROM gw_credentials WHERE subject = :subject", subject=subject)
        await self.db.execute("DELETE FROM gw_webauthn_credentials WHERE subject = :subject", subject=subject)

    # -- WebAuthn authenticators ----------------------------------------------------

    async def add_authenticator(self, a: Authenticator) -> bool:
        """False if the user already has one of that name or the credential id is registered (to anyone)."""
        if await self.authenticator(a.credential_id) is not None or any(x.name == a.name for x in await self.authenticators(a.subject)):
            return False
        await self.db.execute(
            "INSERT INTO gw_webauthn_credentials (id_digest, credential_id, subject, name, public_key, sign_count, aaguid,"
            " transports, multi_device, created_at, last_used_at) VALUES (:digest, :cid, :subject, :name, :key, :count,"
            " :aaguid, :transports, :multi, :now, NULL)",
            digest=_digest(a.credential_id), cid=a.credential_id, subject=a.subject, name=a.name, key=a.public_key,
            count=a.sign_count, aaguid=a.aaguid, transports=",".join(a.transports), multi=int(a.multi_device), now=a.created_at,
        )
        return True

    _COLUMNS = ("SELECT credential_id, subject, name, public_key, sign_count, aaguid, transports, multi_device, created_at,"
                " last_used_at FROM gw_webauthn_credentials")

    @staticmethod
    def _authenticator(r: dict[str, object]) -> Authenticator:
        last = r["last_used_at"]
        return Authenticator(
            credential_id=str(r["credential_id"]), subject=str(r["subject"]), name=str(r["name"]),
            public_key=str(r["public_key"]), sign_count=int(str(r["sign_count"])), aaguid=str(r["aaguid"]),
            transports=tuple(t for t in str(r["transports"]).split(",") if t), multi_device=bool(int(str(r["multi_device"]))),
            created_at=int(str(r["created_at"])), last_used_at=None if last is None else int(str(last)),
        )

    async def authenticators(self, subject: str) -> list[Authenticator]:
        rows = await self.db.fetch(self._COLUMNS + " WHERE subject = :subject", subject=subject)
        return sorted((self._authenticator(dict(r)) for r in rows), key=lambda a: (a.created_at, a.name))

    async def authenticator(self, credential_id: str) -> Authenticator | None:
        """The credential of that id (whoever owns it: a passkey login learns the user from it)."""
        rows = await self.db.fetch(self._COLUMNS + " WHERE id_digest = :digest", digest=_digest(credential_id))
        found = [self._authenticator(dict(r)) for r in rows]
        return found[0] if found and found[0].credential_id == credential_id else None

    async def record_use(self, credential_id: str, old_count: int, new_count: int) -> bool:
        """Move the sign count forward; False if another use moved it first (the caller refuses the assertion).

        An authenticator without a counter (always 0) has nothing to race for: only its last use is written (MariaDB
        counts a row whose values do not change as not changed, so the row count would say nothing there).
        """
        if old_count == new_count == 0:
            await self.db.execute("UPDATE gw_webauthn_credentials SET last_used_at = :now WHERE id_digest = :digest",
                                  now=int(time.time()), digest=_digest(credential_id))
            return True
        changed = await self.db.execute(
            "UPDATE gw_webauthn_credentials SET sign_count = :new, last_used_at = :now WHERE id_digest = :digest AND sign_count = :old",
            new=new_count, now=int(time.time()), digest=_digest(credential_id), old=old_count,
        )
        return changed == 1

    async def remove_authenticator(self, subject: str, name: str) -> bool:
        return await self.db.execute("DELETE FROM gw_webauthn_credentials WHERE subject = :subject AND name = :name",
                                     subject=subject, name=name) > 0
