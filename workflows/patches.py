"""The patches of SubscriptionWorkflow, and how a run asks for them.

A `workflow.patched` call that is true in a new run costs that run a marker and, because
the SDK keeps the `TemporalChangeVersion` search attribute, an upsert of its own: one more
visibility write on the server. Runs asked for five patches, one by one, four as they began
and one at their first test clock advance, so a run started with eight extra events and its
first renewal on a test clock paid a second upsert.

Runs that record BUNDLE, asked once as the workflow is constructed (before any handler or
the run method can ask for anything), use every patch in BUNDLED without asking for it.
Runs recorded before BUNDLE existed never see its marker on replay, so they ask for each
patch exactly where they always did. A patch added later is asked for on its own, until
a new bundle takes it in.
"""

from __future__ import annotations

from temporalio import workflow

# Runs recorded before this patch continued as new after every renewal and called the
# charge and the projection as (remote) activities.
LEAN_RENEWALS = "lean-renewals"
# Runs recorded before this patch projected a paid renewal with a local activity of its own
# after the charge; now the charge activity writes it (decided before the charge).
CHARGE_PROJECTS_RENEWAL = "charge-projects-renewal"
# Runs recorded before this patch upserted every search attribute at each projection; now
# only those that changed, and nothing when none did.
SEARCH_ATTRIBUTES_ON_CHANGE = "search-attributes-on-change"
# Runs recorded before this patch projected a paid first payment (at creation or when the
# trial ends) with a local activity of its own after the charge.
CHARGE_PROJECTS_FIRST_PAYMENT = "charge-projects-first-payment"
# Runs recorded before this patch answered a test clock advance as soon as the status turned
# terminal, which could be before the final state reached PostgreSQL.
ADVANCE_WAITS_FOR_FINAL_PROJECTION = "advance-waits-for-final-projection"

BUNDLE = "bundled-patches-1"
BUNDLED = frozenset(
    {
        LEAN_RENEWALS,
        CHARGE_PROJECTS_RENEWAL,
        SEARCH_ATTRIBUTES_ON_CHANGE,
        CHARGE_PROJECTS_FIRST_PAYMENT,
        ADVANCE_WAITS_FOR_FINAL_PROJECTION,
    }
)
# Runs recorded after these patches but before BUNDLE asked for them as the run started, so
# a patch first asked for mid-run did not cost that task an extra upsert.
ASKED_AT_RUN_START = (
    CHARGE_PROJECTS_RENEWAL,
    SEARCH_ATTRIBUTES_ON_CHANGE,
    CHARGE_PROJECTS_FIRST_PAYMENT,
)


class RunPatches:
    """Answers `patched` for one run; construct it in the workflow's `__init__`."""

    def __init__(self) -> None:
        self._bundled = workflow.patched(BUNDLE)

    def at_run_start(self) -> None:
        """What runs recorded before BUNDLE asked for as they started."""
        if not self._bundled:
            for patch in ASKED_AT_RUN_START:
                workflow.patched(patch)

    def use(self, patch: str) -> bool:
        """Whether this run has `patch`: `workflow.patched(patch)` unless bundled."""
        if self._bundled and patch in BUNDLED:
            return True
        return workflow.patched(patch)
