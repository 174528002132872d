"""The web console: server-rendered pages where people approve with a passkey (``treasury web``)."""
