"""The engine every feature of ``cnn-compare`` uses, and that names none of them: jobs and the
worker that runs them, launching workers and the executors that place them, the lock and the
layout of a results folder, the framework registry, the feature registry, the shared options
and the live progress display."""
