"""trainsmart: a Kubernetes operator for PyTorch training jobs and hyperparameter sweeps."""

__version__ = "0.1.0"
