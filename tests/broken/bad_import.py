"""An app module whose import fails, as a user's typo would."""

import this_module_does_not_exist  # noqa: F401

app = None
