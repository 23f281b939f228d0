"""Start the demo app as a user does (python app.py --port N) on 127.0.0.1, offline, for the demo tests."""

from lab.tools.loadtest import APP, OFFLINE, SHIPPED, free_port, start_app, stop_app

__all__ = ["APP", "OFFLINE", "SHIPPED", "free_port", "start_app", "stop_app"]
