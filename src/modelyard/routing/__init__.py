"""Traffic routing: the deployments file, and the pure decisions taken for every request (which target, which
replica, whether to retry, fall back, mirror or eject). I/O lives in ``deploy/`` and ``gateway/``."""
