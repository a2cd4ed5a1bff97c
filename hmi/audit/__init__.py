"""The signed, hash-chained audit trail: append, checkpoint, verify, export (no Textual)."""
