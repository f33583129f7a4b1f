"""The coordinator: one process, one event loop, owning the watcher, job queue, supervisor and control plane."""
