"""Recur's data converter: the stock pydantic JSON encoding, one JSON converter for all the
payload converters the SDK builds (one per workflow activation)."""

from __future__ import annotations

from datetime import UTC, datetime

from temporalio.contrib.pydantic import PydanticPayloadConverter, pydantic_data_converter
from temporalio.converter import WorkflowSerializationContext

from domain.contracts import ChargeOutcome, EventDraft
from workflows.converter import SHARED_JSON, PayloadConverter, data_converter

OUTCOME = ChargeOutcome(status="paid", invoice_id="in_1", attempt_number=2, amount=1999)
EVENT = EventDraft(
    id="evt_1",
    type="invoice.paid",
    subscription_id="sub_1",
    customer_id="cus_1",
    occurred_at=datetime(2029, 1, 31, 8, 0, tzinfo=UTC),
    data={"amount": 1999},
)


async def test_payloads_are_the_stock_pydantic_encoding() -> None:
    ours = await data_converter.encode([OUTCOME, EVENT, None, b"raw"])
    stock = await pydantic_data_converter.encode([OUTCOME, EVENT, None, b"raw"])
    assert ours == stock
    decoded = await data_converter.decode(stock, [ChargeOutcome, EventDraft, type(None), bytes])
    assert decoded == [OUTCOME, EVENT, None, b"raw"]


def test_every_instance_shares_one_json_converter() -> None:
    first, second = PayloadConverter(), PayloadConverter()
    assert first.converters[b"json/plain"] is second.converters[b"json/plain"] is SHARED_JSON
    assert list(first.converters) == list(PydanticPayloadConverter().converters)
    context = WorkflowSerializationContext(namespace="default", workflow_id="subscription/sub_1")
    in_context = data_converter.with_context(context).payload_converter
    assert in_context.from_payload(first.to_payload(OUTCOME), ChargeOutcome) == OUTCOME
