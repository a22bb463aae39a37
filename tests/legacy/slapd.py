"""A throwaway OpenLDAP directory: Debian's slapd on a free port, loaded with ldapadd.

dc=example,dc=org with people alice, bob (inetOrgPerson, {SSHA} passwords
"<name>-pw") and carol (employeeType: disabled), groups editors (alice, bob)
and reporting (alice), and the service account cn=gateway (password
"gateway-pw") that may search but never read passwords.
"""
from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

SUFFIX = "dc=example,dc=org"
ADMIN = f"cn=admin,{SUFFIX}"
ADMIN_PW = "admin-pw"
SERVICE = f"cn=gateway,{SUFFIX}"
SERVICE_PW = "gateway-pw"
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"

CONF = """\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {tmp}/slapd.pid
database mdb
maxsize 16777216
directory {tmp}/db
suffix "{suffix}"
rootdn "{admin}"
rootpw {admin_pw}
access to attrs=userPassword by anonymous auth by self write by * none
access to * by users read by anonymous auth
"""


def ssha(password: str) -> str:
    salt = os.urandom(8)
    return "{SSHA}" + base64.b64encode(hashlib.sha1(password.encode() + salt).digest() + salt).decode()


def _person(uid: str, *, disabled: bool = False) -> str:
    return (
        f"dn: uid={uid},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid.title()}\nsn: {uid.title()}\n"
        f"mail: {uid}@example.com\nemployeeType: {'disabled' if disabled else 'staff'}\nuserPassword: {ssha(uid + '-pw')}\n"
    )


def _group(name: str, *members: str) -> str:
    lines = "".join(f"member: uid={m},{PEOPLE}\n" for m in members)
    return f"dn: cn={name},{GROUPS}\nobjectClass: groupOfNames\ncn: {name}\n{lines}"


def initial_ldif() -> str:
    entries = [
        f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n",
        f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n",
        f"dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups\n",
        f"dn: {SERVICE}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: gateway\n"
        f"userPassword: {ssha(SERVICE_PW)}\n",
        _person("alice"), _person("bob"), _person("carol", disabled=True),
        _group("editors", "alice", "bob"), _group("reporting", "alice"),
    ]
    return "\n".join(entries)


def make_tls(tmp: Path) -> Path:
    """A CA and a server certificate for 127.0.0.1 and localhost, signed by it; returns the CA file."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gateway test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    import ipaddress

    san = x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1)).add_extension(san, critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    (tmp / "ca.pem").write_bytes(ca.public_bytes(pem))
    (tmp / "cert.pem").write_bytes(cert.public_bytes(pem))
    (tmp / "key.pem").write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return tmp / "ca.pem"


class Slapd:
    def __init__(self, tmp: Path, port: int, ldaps_port: int | None = None) -> None:
        self.tmp, self.port, self.ldaps_port = tmp, port, ldaps_port
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"ldap://127.0.0.1:{port}"
        self.ca_file = make_tls(tmp) if ldaps_port else None  # with an ldaps port: TLS there and StartTLS on port

    def start(self) -> None:
        binary = shutil.which("slapd") or "/usr/sbin/slapd"
        if not os.path.exists(binary):
            raise RuntimeError("slapd is not installed: run the README's test command (make test)")
        (self.tmp / "db").mkdir(parents=True, exist_ok=True)
        conf = self.tmp / "slapd.conf"
        text = CONF.format(tmp=self.tmp, suffix=SUFFIX, admin=ADMIN, admin_pw=ADMIN_PW)
        urls = f"{self.url}/"
        if self.ldaps_port:
            text = (f"TLSCACertificateFile {self.tmp}/ca.pem\nTLSCertificateFile {self.tmp}/cert.pem\n"
                    f"TLSCertificateKeyFile {self.tmp}/key.pem\n") + text
            urls += f" ldaps://127.0.0.1:{self.ldaps_port}/"
        conf.write_text(text)
        log = open(self.tmp / "slapd.log", "ab")
        self.proc = subprocess.Popen([binary, "-d", "0", "-f", str(conf), "-h", urls],
                                     stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 20
        while self.ldap("ldapsearch", "-b", "", "-s", "base", check=False).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("slapd did not start:\n" + (self.tmp / "slapd.log").read_text(errors="replace")[-3000:])
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(15)
            self.proc = None

    def ldap(self, tool: str, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [tool, "-x", "-H", self.url, "-D", ADMIN, "-w", ADMIN_PW, *args]
        return subprocess.run(command, input=stdin, capture_output=True, text=True, check=check, timeout=20)

    def load(self) -> None:
        self.ldap("ldapadd", stdin=initial_ldif())

    def modify(self, ldif: str) -> None:
        self.ldap("ldapmodify", stdin=ldif)

    def set_groups(self, uid: str, groups: list[str]) -> None:
        """Make ``uid`` a member of exactly ``groups`` (groups that do not exist are created)."""
        member = f"uid={uid},{PEOPLE}"
        found = self.ldap("ldapsearch", "-LLL", "-b", GROUPS, "(objectClass=groupOfNames)", "cn", "member").stdout
        existing: dict[str, list[str]] = {}
        for block in found.strip().split("\n\n"):
            lines = [l for l in block.splitlines() if l.startswith("cn: ") or l.startswith("member: ")]
            name = next((l[4:] for l in lines if l.startswith("cn: ")), None)
            if name:
                existing[name] = [l[8:] for l in lines if l.startswith("member: ")]
        for name, members in existing.items():
            if member in members and name not in groups:
                op = "delete" if len(members) > 1 else None
                if op is None:  # groupOfNames needs a member: the admin holds the place
                    self.modify(f"dn: cn={name},{GROUPS}\nchangetype: modify\nadd: member\nmember: {ADMIN}\n")
                self.modify(f"dn: cn={name},{GROUPS}\nchangetype: modify\ndelete: member\nmember: {member}\n")
            elif member not in members and name in groups:
                self.modify(f"dn: cn={name},{GROUPS}\nchangetype: modify\nadd: member\nmember: {member}\n")
        for name in groups:
            if name not in existing:
                self.ldap("ldapadd", stdin=_group(name, uid))

    def set_disabled(self, uid: str, disabled: bool) -> None:
        value = "disabled" if disabled else "staff"
        self.modify(f"dn: uid={uid},{PEOPLE}\nchangetype: modify\nreplace: employeeType\nemployeeType: {value}\n")
