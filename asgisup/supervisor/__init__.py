"""The supervisor: binds the shared socket, forks and watches the workers, stops them."""
