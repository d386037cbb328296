"""The Stripe adapter: customers, payment methods, off-session PaymentIntents, refunds.

Everything Recur asks of Stripe goes through here, with errors sorted into what a caller
must handle: card declines (a business outcome), transient faults (raise, so Temporal
retries with backoff) and invalid requests (a failure no retry will fix).
Works the same against api.stripe.com and localstripe.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import stripe
import structlog

from config import Settings

log = structlog.get_logger()


class InvalidPaymentRequest(Exception):
    """Stripe refused the request itself (bad parameters, unknown object): do not retry."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class CardDeclined(Exception):
    """The card was refused (on attaching it, or a charge outside `charge`): not a fault."""

    def __init__(self, code: str, message: str, decline_code: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.decline_code = decline_code


@dataclass(frozen=True)
class PaymentResult:
    status: str  # succeeded | failed | requires_action
    payment_intent_id: str | None
    decline_code: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None


TRANSIENT_ERRORS = (stripe.RateLimitError, stripe.APIConnectionError)


class StripeGateway:
    def __init__(self, api_key: str, api_base: str | None) -> None:
        # No SDK-level retries: a retried POST without honoured idempotency could charge
        # twice (localstripe ignores Idempotency-Key). Temporal does the retrying, and the
        # charge activity checks what Stripe already has before charging again.
        # aiohttp rather than httpx: about 1 ms less CPU per call (bench/RESULTS.md), which
        # is a charge per renewal. Its session is opened on first use, in the running loop.
        self._http = stripe.AIOHTTPClient()
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else None,
            max_network_retries=0,
            http_client=self._http,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> StripeGateway:
        return cls(settings.stripe_api_key, settings.effective_stripe_api_base)

    async def aclose(self) -> None:
        """Close the HTTP session (the process is stopping)."""
        await self._http.close_async()  # type: ignore[no-untyped-call]

    async def create_customer(self, *, email: str, name: str | None, recur_id: str) -> str:
        params: dict[str, Any] = {"email": email, "metadata": {"recur_customer_id": recur_id}}
        if name:
            params["name"] = name
        customer = await self._call(
            self._client.v1.customers.create_async(
                params,  # type: ignore[arg-type]
                {"idempotency_key": f"customer:{recur_id}"},
            )
        )
        return str(customer.id)

    async def delete_customer(self, stripe_customer_id: str) -> None:
        """Delete a Stripe customer (one Recur created and will not keep); gone already is fine."""
        try:
            await self._call(self._client.v1.customers.delete_async(stripe_customer_id))
        except InvalidPaymentRequest as err:
            if err.code != "resource_missing":
                raise

    async def attach_payment_method(self, *, stripe_customer_id: str, payment_method: str) -> str:
        """Attach a payment method (id or test token) and make it the default; returns its id."""
        attached = await self._call(
            self._client.v1.payment_methods.attach_async(
                payment_method, {"customer": stripe_customer_id}
            )
        )
        await self._call(
            self._client.v1.customers.update_async(
                stripe_customer_id,
                {"invoice_settings": {"default_payment_method": attached.id}},
            )
        )
        return str(attached.id)

    async def charge(
        self,
        *,
        stripe_customer_id: str,
        payment_method: str,
        amount: int,
        currency: str,
        idempotency_key: str,
        metadata: dict[str, str],
    ) -> PaymentResult:
        """Create and confirm an off-session PaymentIntent under `idempotency_key`."""
        params: dict[str, Any] = {
            "amount": amount,
            "currency": currency,
            "customer": stripe_customer_id,
            "payment_method": payment_method,
            "off_session": True,
            "confirm": True,
            "metadata": {**metadata, "recur_idempotency_key": idempotency_key},
        }
        try:
            # A raw request: the same call, errors and retries as `payment_intents.create`,
            # without turning the whole PaymentIntent into StripeObjects (a third of the
            # client's CPU per charge) when the status, id and last error are all we read.
            response = await self._client.raw_request_async(
                "post", "/v1/payment_intents", **params, idempotency_key=idempotency_key
            )
        except stripe.CardError as err:
            return await self._declined(err)
        except TRANSIENT_ERRORS:
            raise
        except stripe.InvalidRequestError as err:
            raise InvalidPaymentRequest(
                err.code or "invalid_request", err.user_message or str(err)
            ) from err
        return _result_of(response.data)

    async def find_payment(
        self, *, stripe_customer_id: str, idempotency_key: str
    ) -> PaymentResult | None:
        """The PaymentIntent an earlier try created under this key, if Stripe has one.

        Real Stripe would replay the response for the same Idempotency-Key, but only for
        24 hours and not on localstripe; looking the intent up by its metadata works for both.
        """
        charges = await self._call(
            self._client.v1.charges.list_async({"customer": stripe_customer_id, "limit": 100})
        )
        seen: set[str] = set()
        async for charge in charges.auto_paging_iter():
            intent_id = getattr(charge, "payment_intent", None)
            if not intent_id or intent_id in seen:
                continue
            seen.add(intent_id)
            intent = await self._call(self._client.v1.payment_intents.retrieve_async(intent_id))
            if intent.metadata.to_dict().get("recur_idempotency_key") == idempotency_key:
                return _result_of(intent.to_dict())
        return None

    async def count_succeeded_payments(
        self, *, stripe_customer_id: str, idempotency_prefix: str
    ) -> int:
        """Succeeded PaymentIntents whose key starts with the prefix (used by tests and audits)."""
        charges = await self._call(
            self._client.v1.charges.list_async({"customer": stripe_customer_id, "limit": 100})
        )
        intents: set[str] = set()
        async for charge in charges.auto_paging_iter():
            intent_id = getattr(charge, "payment_intent", None)
            if not intent_id or intent_id in intents:
                continue
            intent = await self._call(self._client.v1.payment_intents.retrieve_async(intent_id))
            key = intent.metadata.to_dict().get("recur_idempotency_key", "")
            if intent.status == "succeeded" and key.startswith(idempotency_prefix):
                intents.add(intent_id)
        return len(intents)

    async def refund(self, *, payment_intent_id: str, amount: int, idempotency_key: str) -> str:
        refund = await self._call(
            self._client.v1.refunds.create_async(
                {
                    "payment_intent": payment_intent_id,
                    "amount": amount,
                    "metadata": {"recur_idempotency_key": idempotency_key},
                },
                {"idempotency_key": idempotency_key},
            )
        )
        return str(refund.id)

    async def find_refund(self, *, payment_intent_id: str, idempotency_key: str) -> str | None:
        refunds = await self._call(
            self._client.v1.refunds.list_async({"payment_intent": payment_intent_id, "limit": 100})
        )
        async for refund in refunds.auto_paging_iter():
            if refund.metadata.to_dict().get("recur_idempotency_key") == idempotency_key:
                return str(refund.id)
        return None

    async def _declined(self, err: stripe.CardError) -> PaymentResult:
        error = err.error
        intent_id = getattr(error, "payment_intent", None) if error else None
        if isinstance(intent_id, dict | stripe.StripeObject):
            intent_id = intent_id.get("id") if isinstance(intent_id, dict) else intent_id["id"]
        if intent_id is None and error is not None and getattr(error, "charge", None):
            # localstripe omits error.payment_intent; the charge knows it.
            charge = await self._call(self._client.v1.charges.retrieve_async(str(error.charge)))
            intent_id = getattr(charge, "payment_intent", None)
        return PaymentResult(
            status="failed",
            payment_intent_id=str(intent_id) if intent_id else None,
            decline_code=(getattr(error, "decline_code", None) if error else None) or None,
            failure_code=err.code or "card_declined",
            failure_message=err.user_message or "The card was declined.",
        )

    async def _call(self, awaitable: Any) -> Any:
        """Await a Stripe call, turning a refused card into `CardDeclined` and request errors
        into `InvalidPaymentRequest` (a charge's decline is a result: see `charge`)."""
        try:
            return await awaitable
        except stripe.CardError as err:
            raise CardDeclined(
                err.code or "card_declined",
                err.user_message or "The card was declined.",
                (getattr(err.error, "decline_code", None) if err.error else None) or None,
            ) from err
        except stripe.InvalidRequestError as err:
            raise InvalidPaymentRequest(
                err.code or "invalid_request", err.user_message or str(err)
            ) from err


def _result_of(intent: Mapping[str, Any]) -> PaymentResult:
    """What a PaymentIntent (as JSON) says about the charge."""
    status, intent_id = intent["status"], str(intent["id"])
    if status == "succeeded":
        return PaymentResult(status="succeeded", payment_intent_id=intent_id)
    if status in ("requires_action", "processing"):
        return PaymentResult(
            status="requires_action",
            payment_intent_id=intent_id,
            failure_code="authentication_required",
            failure_message="The customer must authenticate this payment.",
        )
    last_error = intent.get("last_payment_error") or {}
    return PaymentResult(
        status="failed",
        payment_intent_id=intent_id,
        decline_code=last_error.get("decline_code"),
        failure_code=last_error.get("code") or "card_declined",
        failure_message=last_error.get("message") or "The card was declined.",
    )
