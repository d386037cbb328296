"""What routes do that is more than one repository call: the steps around Stripe and
Temporal calls, each owning the commit that must precede its call (see `api.deps`)."""
