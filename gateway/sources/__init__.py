"""Identity sources: who may log in, and with which claims.

A source is one module plus one line in ``registry.KINDS``: ``file`` (the users
file), ``sql`` (a legacy application's table), ``ldap`` (a directory), ``http``
(a legacy login endpoint). ``registry.build_chain`` turns the configuration's
``users:`` list (or ``users_file:``) into the ``chain.UserChain`` that logins
and refreshes ask. (Nothing is imported here: ``config`` imports ``settings``.)
"""
