"""Sample orders for the sandbox's providers: valid bodies the demo and the tests start from.

The card is the test card the seeds name (4111 1111 1111 1111); it is only ever sent to the sandbox.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

TEST_CARD = "4111111111111111"


def extend_order(transaction_id: str, **extra) -> dict:
    """A valid Extend order: one contract line (product + plan) and one lead line."""
    now_ms = int(time.time() * 1000)
    return {
        "currency": "USD",
        "storeId": "demo-store",
        "transactionId": transaction_id,
        "transactionDate": now_ms,
        "customer": {
            "name": "Ada Lovelace",
            "email": "ada@example.com",
            "billingAddress": {
                "address1": "12 Analytical St",
                "city": "Boston",
                "countryCode": "US",
                "postalCode": "02108",
                "province": "MA",
            },
        },
        "lineItems": [
            {
                "lineItemTransactionId": f"{transaction_id}-1",
                "quantity": 1,
                "product": {
                    "id": "SKU-TV-55",
                    "title": "55in TV",
                    "listPrice": 49999,
                    "purchasePrice": 44999,
                    "purchaseDate": now_ms,
                },
                "plan": {"id": "PLAN-TV-3Y", "purchasePrice": 5999},
            },
            {
                "lineItemTransactionId": f"{transaction_id}-2",
                "quantity": 2,
                "product": {"id": "SKU-HDMI", "title": "HDMI cable", "purchasePrice": 1299},
            },
        ],
        "total": 54297,
        **extra,
    }


def chaiz_order(plan_id: int, addon_ids: list[int] | None = None, **extra) -> dict:
    """A valid Chaiz complete order for a plan id (and add-ons) made by the sandbox's admin API."""
    return {
        "payment": {
            "accountNumber": TEST_CARD,
            "creditCardExpirationDateString": f"12/{datetime.now(UTC).year + 2}",
            "methodType": "VISA",
            "paymentOption": "Full",
            "cvc": "123",
        },
        "searchResultPlanIds": [plan_id],
        "userDetails": {
            "address": "12 Analytical St",
            "city": "Boston",
            "email": "ada@example.com",
            "firstName": "Ada",
            "lastName": "Lovelace",
            "state": "MA",
            "zip": "02108",
            "phoneNumber": "6175550100",
            "externalId": "customer-81723",
        },
        "selectedAddonIds": addon_ids or [],
        "device": "Desktop",
        **extra,
    }


def adobe_order(customer_id: str, offer_id: str, **extra) -> dict:
    """A valid Adobe VIP Marketplace NEW order for a customer and offer made by the sandbox's admin API."""
    return {
        "customerId": customer_id,
        "externalReferenceId": "cart-81723",
        "orderType": "NEW",
        "lineItems": [{"extLineItemNumber": 1, "offerId": offer_id, "quantity": 3, "currencyCode": "USD"}],
        **extra,
    }


def battleface_order(quote_id: str, programid: int = 10, **extra) -> dict:
    """A valid battleface dynamic order for a quote made by the sandbox's admin API."""
    return {
        "quote_id": quote_id,
        "programid": programid,
        "hostcountrystate": "OH",
        "applicant": {
            "first_name": "John",
            "last_name": "Johnson",
            "dob": "1997-01-05",
            "email": "john@example.com",
            "country_code": "US",
            "state_code": "OH",
        },
        "start_at": "2027-12-05",
        "end_at": "2027-12-15",
        "currency_id": "USD",
        "destinations": [{"country_code": "FR"}],
        **extra,
    }


def webroot_order(cart_code: str, **extra) -> dict:
    """A valid Webroot order converting a cart made by the sandbox's admin API."""
    return {"VendorOrderCode": cart_code, "PaymentMethod": "PurchaseOrder", "PurchaseOrder": "P4713A20", **extra}
