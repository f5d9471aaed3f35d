"""The packaged PyTorch trainer that a TrainingJob runs by default."""

__version__ = "0.1.0"
