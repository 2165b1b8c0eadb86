"""`jinad`: the per-host REST daemon. Build the app with :func:`jinad_fab.daemon.app.create_app`."""
