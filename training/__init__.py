"""Training: datasets, the engine-agnostic model interface, engines, evaluation and bundles."""
