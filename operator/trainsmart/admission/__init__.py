"""Admission: the validating webhook for TrainingJobs and HyperparamSweeps.

`rules` holds the pure checks (also what the operator's InvalidSpec condition and the example tests use);
`webhook` wires them into Kopf and serves them over TLS with our own certificates.
"""

from trainsmart.admission.rules import (
    Problem,
    format_problems,
    trainingjob_warnings,
    trial_name,
    validate_sweep,
    validate_trainingjob,
)
from trainsmart.admission.webhook import (
    MANAGED_CONFIGURATION_NAME,
    SWEEP_WEBHOOK_ID,
    TRAININGJOB_WEBHOOK_ID,
    ServiceRef,
    ServiceWebhookServer,
    WebhookCertificates,
    build_webhook_configuration,
    configure_admission,
    enable_admission,
    ensure_webhook_certificates,
    register_admission,
)

__all__ = [
    "MANAGED_CONFIGURATION_NAME",
    "SWEEP_WEBHOOK_ID",
    "TRAININGJOB_WEBHOOK_ID",
    "Problem",
    "ServiceRef",
    "ServiceWebhookServer",
    "WebhookCertificates",
    "build_webhook_configuration",
    "configure_admission",
    "enable_admission",
    "ensure_webhook_certificates",
    "format_problems",
    "register_admission",
    "trainingjob_warnings",
    "trial_name",
    "validate_sweep",
    "validate_trainingjob",
]
