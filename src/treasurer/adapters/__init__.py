"""Adapters: the only code that speaks SQL, JSON-RPC or HTTP out, or touches key files."""
