"""The headless Service `<job>` that gives every replica a stable DNS name.

Headless (no cluster IP, no proxying): it exists only for DNS, so `<job>-<index>.<job>.<ns>.svc` resolves
to the pod. `publishNotReadyAddresses` makes the records appear as soon as the pods have IPs, before any
readiness: the replicas must find rank 0 to rendezvous, and none of them is "ready" before that.
"""

from __future__ import annotations

from typing import Any

from trainsmart.api import TrainingJob
from trainsmart.builders.metadata import child_metadata
from trainsmart.names import job_name, selector_labels, service_name
from trainsmart.settings import OperatorSettings

RENDEZVOUS_PORT_NAME = "rendezvous"


def build_headless_service(job: TrainingJob, settings: OperatorSettings) -> dict[str, Any]:
    """The Service selecting every replica pod of `job`, with the rendezvous port for documentation."""
    name = job_name(job)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_metadata(job, service_name(name)),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": selector_labels(name),
            "ports": [
                {
                    "name": RENDEZVOUS_PORT_NAME,
                    "port": settings.master_port,
                    "targetPort": settings.master_port,
                    "protocol": "TCP",
                }
            ],
        },
    }
