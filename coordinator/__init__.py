"""The coordinator: one process and one event loop, owning the watcher, job queue, supervisor and control
plane."""
