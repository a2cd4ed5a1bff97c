"""Who is acting, proven: accounts, roles, passwords, TOTP, sessions and e-signatures.

Pure services (no Textual): the TUI and the ``hmi users`` command drive them; every state
change they make is written together with its audit event, and every refusal is recorded.
Build them with :func:`hmi.auth.services.build_auth_services`.
"""
