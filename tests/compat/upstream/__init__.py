"""DEEPaaS 2.6.0's own wire-level tests, ported to run against our server."""
