"""Image code: byte sniffing (web-safe) and Wand pipelines (workers only)."""
