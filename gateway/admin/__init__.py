"""The admin API on the admin listener: named admin keys (gateway/auth/admin_keys.py), one dispatcher (``api``),
the contract an endpoint is written against (``base``), and the endpoints by concept (``sessions``).

Adding an endpoint: write ``async def handler(call: AdminCall) -> web.StreamResponse`` in a module of this package,
list it as ``AdminEndpoint(method, path, handler)`` in that module's ``ENDPOINTS``, and add the module's
``ENDPOINTS`` to ``api.ENDPOINTS``. The dispatcher has checked the admin key by then; the handler audits what it did
with ``call.audit(...)`` (docs/admin.md, "Adding an endpoint").
"""

API_PREFIX = "/admin/api/"  # on the admin listener only; here so that the CLI's client imports no server
