"""Apps written with real frameworks, served by asgisup in the test suite."""
