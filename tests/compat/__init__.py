"""DEEPaaS 2.x compatibility: what a 2.x model or client sees, on the wire."""
