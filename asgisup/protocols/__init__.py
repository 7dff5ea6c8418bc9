"""Wire protocols. Nothing here imports the worker or the supervisor: dependencies point down."""
