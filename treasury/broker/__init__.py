"""The Celery adapter below the runtime: worker options, task names, the configured app and the
dispatcher that sends steps by task name.

Nothing here registers a task or builds a runtime; ``treasury.worker`` (above the runtime) does.
Importing this package imports Celery, so callers on the CLI's start-up path import it only when
a broker is configured.
"""
