"""Adapters for wallet vendors' pre-sign hooks (see :mod:`treasurer.service.vendor_hooks`).

:mod:`.fireblocks` is the Fireblocks API Co-Signer callback handler; :mod:`.jwt_rs256` the
RS256 tokens it speaks; :mod:`.config` reads a handler's keys and mappings from a file.
"""
