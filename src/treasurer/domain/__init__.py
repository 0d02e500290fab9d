"""Pure rules of Treasurer: money, org, policies, windows, decisions, authorizations.

Nothing here reads a clock, touches a file or a socket, or draws randomness: every fact a rule
needs is passed in, so every rule is a plain function that tests can call with a table.
"""
