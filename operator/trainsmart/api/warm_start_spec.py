"""`spec.warmStart` of a HyperparamSweep: seed the search with another sweep's finished trials (issue 15).

A stopped or finished search is extended by a new sweep that names it: the suggester reads the other
sweep's trial table (`status.trials`, which survives trialRetention) as finished observations every time it
suggests, exactly as it reads its own trials, so nothing is copied and an operator restart loses nothing.
Those trials are not this sweep's: they are not counted towards maxTrials and never appear in its table.
"""

from __future__ import annotations

from pydantic import Field

from trainsmart.api.common import ApiModel, DnsName


class WarmStart(ApiModel):
    """Another sweep whose finished trials this one learns from before (and while) it runs its own."""

    sweep: DnsName = Field(
        description="Name of a HyperparamSweep in the same namespace with the same parameters (names and types) "
        "and objective metric. Its Succeeded and EarlyStopped trials are observations, its Failed ones failures; "
        "a sweep that is missing or does not match is ignored, and a WarmStartIgnored Warning Event says why."
    )
