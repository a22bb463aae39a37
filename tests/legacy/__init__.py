"""Real legacy applications the identity-source tests log in against (Django, Flask, a PHP-style table)."""
