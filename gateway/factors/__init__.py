"""Second factors: the durable credentials store (``database``, ``migrations``, ``store``), secrets sealed at rest
(``sealing``), TOTP (``totp``) and recovery codes (``recovery``); the login step and the endpoints live in ``flow``."""
