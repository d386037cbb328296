"""The lifecycle of one subscription, as steps of `SubscriptionWorkflow`.

Each module is one part of the lifecycle, read top to bottom: `start` (the first
decision: a trial, or the first charge and an incomplete payment's expiry), `trial`,
`renewal`, `dunning`, `cancel`, `pause` and `change_plan`; `steps` says which step falls
due next and runs it.

The mechanism is one: steps are plain functions that take a `Subscription`
(`context.py`), the small object that holds what a run carries (its input, its state,
its clock, its patches) and the few things every step does with it (mint ids, events and
invoices, charge, refund, project). Functions over one shared context, rather than
methods spread over mixins of the workflow class, keep each step's dependencies visible
in its signature and its imports, let a module be read on its own, and leave the
workflow class (`workflows/subscription.py`) with only the run loop and the message
handlers. Temporal sees one workflow: the context lives inside it, and the steps run
under the workflow's lock exactly as the handlers and the loop call them.
"""
