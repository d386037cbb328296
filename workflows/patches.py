"""The patches of SubscriptionWorkflow, and how a run asks for them.

A `workflow.patched` call that is true in a new run costs that run a marker and, because
the SDK keeps the `TemporalChangeVersion` search attribute, an upsert of its own: one more
visibility write on the server. Runs asked for five patches, one by one, four as they began
and one at their first test clock advance, so a run started with eight extra events and its
first renewal on a test clock paid a second upsert.

A run records the newest bundle (BUNDLES), asked once as the workflow is constructed
(before any handler or the run method can ask for anything), and uses every patch in it
without asking for it. A run recorded with an older bundle finds that bundle's marker on
replay and asks for each newer patch on its own where it first needs it; runs recorded
before any bundle ask for each patch exactly where they always did.

Where runs branch on a patch (`patches.use`), each with the behaviour of runs recorded
before it beside the current one:

- `workflows/lifecycle/context.py`, section "patched behaviour": LEAN_RENEWALS (local or
  remote activities), DURABLE_UPDATE_CHARGES, CANCEL_REQUEST_CANCELS (an activity in
  flight runs to its end), SEARCH_ATTRIBUTES_ON_CHANGE; and `charge_opening`, which the
  steps that open a period call with their patch: CHARGE_PROJECTS_FIRST_PAYMENT
  (`lifecycle/start.py`, `lifecycle/trial.py`), CHARGE_PROJECTS_RENEWAL
  (`lifecycle/renewal.py`).
- `workflows/lifecycle/context.py`, `_discounted`: DISCOUNTS (asked only by a run that
  holds a discount, as an invoice is made).
- `workflows/subscription.py`: CANCEL_REQUEST_CANCELS (`run`), LEAN_RENEWALS
  (`_run_is_full`: a run per period), ADVANCE_WAITS_FOR_FINAL_PROJECTION
  (`advance_clock`).
- ITEMS_AND_BALANCE, asked through `Subscription.items_on` (`lifecycle/context.py`, which
  also builds invoices by it): the lines of `lifecycle/start.py`, `lifecycle/trial.py`,
  `lifecycle/renewal.py` (and a scheduled change of items), the credits of
  `lifecycle/pause.py` and `lifecycle/cancel.py`, and `lifecycle/change_plan.py`, which
  takes the items path (`lifecycle/items.py`). Validators, which may not ask, use
  `RunPatches.expects`.
- USAGE_IN_ARREARS, asked through `lifecycle/usage.metered_items` by runs with metered
  items only: the renewal due after the usage grace (`lifecycle/steps.py`, through
  `renewal.renews_at`) and its `usage` lines (`lifecycle/renewal.py`), the final usage of
  `lifecycle/cancel.py`, the usage a change of items now (`lifecycle/items.py`) or a pause
  (`lifecycle/pause.py`) leaves for the next invoice.
- USAGE_STRETCHES_MERGED, asked through `lifecycle/usage._groups` by a run whose waiting
  usage holds two stretches of one meter from one period start.
- USAGE_IN_PREVIEWS, asked through `lifecycle/usage.renewal_usage_so_far` by a preview of
  the next renewal that has usage to show (`lifecycle/items.py`).
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

# Runs recorded before this patch could charge inside the workflow task that delivered an
# update (an upgrade, `retry_payment`, `resume`, a cancel that settles, a test clock
# advance): a worker that died before the task completed lost the update while Stripe had
# taken the money. Now such a charge first waits for the update to be accepted in history.
DURABLE_UPDATE_CHARGES = "durable-update-charges"
# Runs recorded before this patch ended CANCELED when Temporal was asked to cancel the
# workflow (the UI's "Request Cancellation"), leaving the subscription active in the read
# model; and the cancel interrupted a charge or a projection in flight. Now an activity in
# flight runs to its end, then the subscription is canceled (audited, read model, events).
CANCEL_REQUEST_CANCELS = "cancel-request-cancels-subscription"
# Runs recorded before this patch billed one plan at quantity 1 (one `subscription` line at
# the plan's price) and carried a net credit to the next invoice as `credit` lines. Now a
# subscription has items (plans in quantities) with a line per item on every invoice, its
# items change by `update_items` (a plan change is the one-item case), and a net credit
# goes to the customer's balance (a `balance` line; the charge activity writes the ledger).
ITEMS_AND_BALANCE = "items-and-balance"
# Runs recorded before this patch had no metered items (nothing billed in arrears). Now a
# run with metered items renews the usage grace after a period end and puts the ended
# period's usage on the renewal invoice (`usage` lines), and a cancel bills the final
# usage. Asked only by a run that has metered items (`lifecycle/usage.py`).
USAGE_IN_ARREARS = "usage-in-arrears"
# Runs recorded before this patch showed no usage in previews. Now a preview of the next
# renewal (`change_plan`/`update_items` with `preview`) reads the usage so far with an
# activity and shows its `usage` lines. Asked only by a run that has usage to show.
USAGE_IN_PREVIEWS = "usage-in-previews"
# Runs recorded before this patch billed each usage stretch a change left waiting, so two
# stretches of one meter from one period start (an item on the meter removed, another
# added, that one removed too) billed that meter's aggregate twice. Now they are one
# stretch. Asked only by a run holding such stretches (`lifecycle/usage.py`, `_groups`).
USAGE_STRETCHES_MERGED = "usage-stretches-merged"

# Runs recorded before this patch never held a discount (coupons did not exist); a run asks
# for it only once it holds one, where a discount first changes an invoice or a proration.
DISCOUNTS = "discounts"

_BUNDLE_1 = frozenset(
    {
        LEAN_RENEWALS,
        CHARGE_PROJECTS_RENEWAL,
        SEARCH_ATTRIBUTES_ON_CHANGE,
        CHARGE_PROJECTS_FIRST_PAYMENT,
        ADVANCE_WAITS_FOR_FINAL_PROJECTION,
    }
)
# Newest first: a new run records the first; a run recorded with an older bundle asks for
# the patches added since on their own, where it first needs them.
_BUNDLE_2 = _BUNDLE_1 | {DURABLE_UPDATE_CHARGES, CANCEL_REQUEST_CANCELS}
BUNDLES: tuple[tuple[str, frozenset[str]], ...] = (
    ("bundled-patches-3", _BUNDLE_2 | {ITEMS_AND_BALANCE}),
    ("bundled-patches-2", _BUNDLE_2),
    ("bundled-patches-1", _BUNDLE_1),
)
BUNDLE, BUNDLED = BUNDLES[0]
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
        self._bundled: frozenset[str] = frozenset()
        self._asked: dict[str, bool] = {}
        for name, patches in BUNDLES:
            if workflow.patched(name):
                self._bundled = patches
                break

    def at_run_start(self) -> None:
        """What runs recorded before any bundle asked for as they started."""
        if not self._bundled:
            for patch in ASKED_AT_RUN_START:
                workflow.patched(patch)

    def use(self, patch: str) -> bool:
        """Whether this run has `patch`: `workflow.patched(patch)` unless bundled."""
        if patch in self._bundled:
            return True
        self._asked[patch] = answer = workflow.patched(patch)
        return answer

    def expects(self, patch: str) -> bool:
        """What `use` answers, for a validator (which may not ask `patched`): the answer
        already given, else the patch (a handler asking now, live, gets it)."""
        return patch in self._bundled or self._asked.get(patch, True)
