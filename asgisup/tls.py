"""TLS for the listening socket: one server SSLContext, built once in the supervisor.

Built before any worker starts, so a missing file or a wrong password stops the server at
once with one line; the forked workers inherit the context and wrap each accepted
connection with it (``loop.connect_accepted_socket(..., ssl=context)``).
"""

from __future__ import annotations

import ssl

from asgisup.config import Config
from asgisup.errors import ConfigError

CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


def make_context(config: Config) -> ssl.SSLContext | None:
    """The server context for ``config``'s --ssl-* options; None without a certificate.

    Raises ConfigError naming the option whose file or value is unusable.
    """
    if config.ssl_certfile is None:
        if config.ssl_keyfile is not None:
            raise ConfigError("--ssl-keyfile: needs --ssl-certfile too")
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(
            config.ssl_certfile, config.ssl_keyfile, password=config.ssl_keyfile_password
        )
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"--ssl-certfile {config.ssl_certfile}: cannot load the certificate and key "
            f"({getattr(exc, 'strerror', None) or exc})"
        ) from None
    context.verify_mode = CERT_REQS[config.ssl_cert_reqs]
    if config.ssl_ca_certs is not None:
        try:
            context.load_verify_locations(config.ssl_ca_certs)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"--ssl-ca-certs {config.ssl_ca_certs}: {exc}") from None
    if config.ssl_ciphers is not None:
        try:
            context.set_ciphers(config.ssl_ciphers)
        except ssl.SSLError:
            raise ConfigError(
                f"--ssl-ciphers: no cipher matches {config.ssl_ciphers!r} (an OpenSSL cipher list)"
            ) from None
    context.set_alpn_protocols(["http/1.1"])
    return context
