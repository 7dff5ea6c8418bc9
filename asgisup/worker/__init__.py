"""The worker process: its event loop, lifespan, admission-controlled listener, shutdown."""
