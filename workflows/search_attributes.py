"""Search attributes operators filter subscriptions by in the Temporal UI."""

from __future__ import annotations

from types import MappingProxyType

from temporalio.common import SearchAttributeKey

CUSTOMER_ID = SearchAttributeKey.for_keyword("CustomerId")
PLAN_ID = SearchAttributeKey.for_keyword("PlanId")
SUBSCRIPTION_STATUS = SearchAttributeKey.for_keyword("SubscriptionStatus")
NEXT_BILLING_AT = SearchAttributeKey.for_datetime("NextBillingAt")
TEST_CLOCK_ID = SearchAttributeKey.for_keyword("TestClockId")
DUNNING_ATTEMPT = SearchAttributeKey.for_int("DunningAttempt")

# Name -> type, as `temporal server start-dev --search-attribute` and
# `temporal operator search-attribute create` expect them (read-only).
SEARCH_ATTRIBUTE_TYPES = MappingProxyType(
    {
        "CustomerId": "Keyword",
        "PlanId": "Keyword",
        "SubscriptionStatus": "Keyword",
        "NextBillingAt": "Datetime",
        "TestClockId": "Keyword",
        "DunningAttempt": "Int",
    }
)
