"""The web console at ``/console``: server-rendered pages over the admin API, for operators in a browser."""
