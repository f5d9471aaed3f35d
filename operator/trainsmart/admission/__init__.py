"""Admission: the validating webhook for TrainingJobs and HyperparamSweeps.

`rules` holds the pure checks (also what the operator's InvalidSpec condition and the example tests use);
`webhook` serves them over TLS (its Kopf handlers are registered in `trainsmart.main`).
"""
