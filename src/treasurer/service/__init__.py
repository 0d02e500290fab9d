"""Use cases of Treasurer, written against the ports in :mod:`treasurer.service.ports`."""
