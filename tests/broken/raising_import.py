"""An app module that raises while it is imported."""

raise RuntimeError("settings.DATABASE_URL is not set")
