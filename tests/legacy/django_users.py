"""Make a Django ``auth_user`` database with Django itself: ``migrate``, ``make_password``, groups.

Run as a script (Django's settings are process-wide): ``python -m tests.legacy.django_users
ENGINE NAME [HOST PORT USER]``, where ENGINE is postgresql, mysql or sqlite3.
Prints nothing; exits non-zero on failure.

Users (password ``<name>-pw`` for each; pbkdf2_sha256 with 20,000 rounds, see FewerRoundsPBKDF2):
  alice     pbkdf2_sha256 (Django's default), groups editors+reporting, is_staff, email alice@example.com
  bob       pbkdf2_sha256, group editors
  carol     pbkdf2_sha256, is_active false
  hash-<h>  one per hasher: pbkdf2_sha1, argon2, bcrypt_sha256, bcrypt, scrypt, md5 (never accepted), unusable (!)
"""
from __future__ import annotations

import sys

import django
from django.conf import settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher

HASHERS = {
    "pbkdf2_sha256": "tests.legacy.django_users.FewerRoundsPBKDF2",
    "pbkdf2_sha1": "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "argon2": "django.contrib.auth.hashers.Argon2PasswordHasher",
    "bcrypt_sha256": "django.contrib.auth.hashers.BCryptSHA256PasswordHasher",
    "bcrypt": "django.contrib.auth.hashers.BCryptPasswordHasher",
    "scrypt": "django.contrib.auth.hashers.ScryptPasswordHasher",
    "md5": "django.contrib.auth.hashers.MD5PasswordHasher",
}


class FewerRoundsPBKDF2(PBKDF2PasswordHasher):
    """Django's own pbkdf2_sha256, with 20,000 rounds instead of 1,000,000 so the suite stays quick.

    (The format is the same; the rounds are part of every hash, so the gateway reads them from it.)
    """

    iterations = 20_000


def configure(engine: str, name: str, host: str = "", port: str = "", user: str = "") -> None:
    if engine == "mysql":
        import pymysql

        pymysql.install_as_MySQLdb()  # Django's MySQL backend on the pure-Python driver
    database = {"ENGINE": f"django.db.backends.{engine}", "NAME": name}
    if engine != "sqlite3":
        database.update(HOST=host, PORT=port, USER=user, PASSWORD="")
    settings.configure(
        DATABASES={"default": database},
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth"],
        PASSWORD_HASHERS=list(HASHERS.values()),
        USE_TZ=True,
    )
    django.setup()


def main(argv: list[str]) -> None:
    configure(*argv)
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    editors, _ = Group.objects.get_or_create(name="editors")
    reporting, _ = Group.objects.get_or_create(name="reporting")
    alice = User.objects.create(username="alice", email="alice@example.com", first_name="Alice", is_staff=True,
                                password=make_password("alice-pw"))
    alice.groups.add(editors, reporting)
    bob = User.objects.create(username="bob", email="bob@example.com", password=make_password("bob-pw"))
    bob.groups.add(editors)
    User.objects.create(username="carol", email="carol@example.com", is_active=False, password=make_password("carol-pw"))
    for hasher in HASHERS:
        name = f"hash-{hasher}"
        User.objects.create(username=name, email=f"{name}@example.com", password=make_password(f"{name}-pw", hasher=hasher))
    User.objects.create(username="hash-unusable", email="hash-unusable@example.com", password=make_password(None))


if __name__ == "__main__":
    main(sys.argv[1:])
