"""Alarm management (ISA-18.2): the kiosk's alarm list, persisted and audited (no Textual)."""
