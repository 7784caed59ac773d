"""rnnlab.tasks: one module per application, wiring data, a structure, the trainer and metrics together.

Each task has a frozen config dataclass (the CLI and the YAML presets are generated from it) and the
functions ``train(config) -> bundle path``, ``evaluate(bundle, data) -> metrics`` and, where it applies,
``generate``/``predict``. Import a task's module directly: ``from rnnlab.tasks import textgen``.
"""
