"""A Kopf operator with only trainsmart's admission, run by tests/cluster/test_webhook.py.

It is the production wiring (`enable_admission`, what `trainsmart operator --webhook-port` calls) without
the controllers, so the test can watch the apiserver call the webhook without an operator also acting on
the objects. Settings come from the environment because `kopf run` owns the command line:

* TRAINSMART_WEBHOOK_PORT: the port to listen on (loopback);
* TRAINSMART_WEBHOOK_CERT_DIR: where tls.crt, tls.key and ca.crt are (issued at startup when absent);
* TRAINSMART_WEBHOOK_MANAGED: the name of the ValidatingWebhookConfiguration Kopf should maintain, or
  empty when the test manages the configuration itself.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import kopf

from trainsmart.admission import enable_admission

enable_admission(
    host="127.0.0.1",
    port=int(os.environ["TRAINSMART_WEBHOOK_PORT"]),
    cert_dir=Path(os.environ["TRAINSMART_WEBHOOK_CERT_DIR"]),
    managed=os.environ.get("TRAINSMART_WEBHOOK_MANAGED") or None,
)


@kopf.on.startup()
def quiet(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.enabled = False  # nothing to report: this operator only answers admission reviews
