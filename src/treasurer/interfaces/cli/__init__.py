"""The ``treasurer`` command line. Built by :func:`treasurer.bootstrap.main` with the concrete
backends, so this package never imports an adapter."""
