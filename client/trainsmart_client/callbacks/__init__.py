"""Framework callbacks: a Hugging Face `transformers` Trainer or a PyTorch Lightning Trainer reports to the
operator and stops gracefully on SIGTERM with one added line.

    from trainsmart_client.callbacks.huggingface import TrainsmartCallback     # transformers.Trainer
    from trainsmart_client.callbacks.lightning import TrainsmartCallback       # lightning.pytorch.Trainer

Each lives in its own module and imports its framework there, so nothing here (and nothing in
`trainsmart_client`) imports a framework: the core package stays standard library only and imports in an
image that has neither.
"""
