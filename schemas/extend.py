"""Extend's create-order body (seed 001, field names from PROVIDERS.md).

Constraints: ``currency``, ``storeId``, ``transactionId``, ``customer`` and ``lineItems`` are required;
1 to 500 line items, each one of the four kinds (contract: product + plan; lead or non-warrantable: product
alone; shipping protection: ``quoteId`` + ``shipmentInfo``); money in minor units, whole numbers 0 to 2^53-1;
``transactionDate`` and ``purchaseDate`` are 13-digit millisecond timestamps; ``status`` from Extend's enum;
``transactionDelay`` a number of days, fractional allowed (0.5 is 12 hours).
"""

from __future__ import annotations

from marshmallow import ValidationError, fields, validate, validates_schema

from orderrelay.schemas.fields import (
    MAX_SAFE_INTEGER,
    CountryCode,
    CurrencyCode,
    Email,
    MillisTimestamp,
    Money,
    Pattern,
    Strict,
    StrictBoolean,
    StrictNumber,
    Text,
)

ORDER_STATUSES = ("pending", "open", "closed", "voided", "canceled")
# Extend's public docs do not list line-item statuses; a line sent without one counts as fulfilled.
LINE_ITEM_STATUSES = ("fulfilled", "unfulfilled")
MAX_LINE_ITEMS = 500


class AddressSchema(Strict):
    address1 = Text(required=True)
    address2 = Text()
    city = Text(max_length=100, required=True)
    countryCode = CountryCode(required=True)
    postalCode = Text(max_length=20)
    province = Text(max_length=100)


class CustomerSchema(Strict):
    name = Text(required=True)
    email = Email(required=True)
    phone = Text(max_length=32, validate=[Pattern(r"\+?[0-9 ().-]{7,32}", "Not a phone number.")])
    billingAddress = fields.Nested(AddressSchema)
    shippingAddress = fields.Nested(AddressSchema)


class ProductSchema(Strict):
    id = Text(required=True)
    title = Text(max_length=500)
    category = Text()
    listPrice = Money()
    purchasePrice = Money(required=True)
    purchaseDate = MillisTimestamp()


class PlanSchema(Strict):
    id = Text(required=True)
    purchasePrice = Money(required=True)


class LineItemSchema(Strict):
    lineItemTransactionId = Text(required=True)
    quantity = fields.Integer(strict=True, validate=validate.Range(1, 10_000))
    status = fields.String(validate=validate.OneOf(LINE_ITEM_STATUSES))
    product = fields.Nested(ProductSchema)
    plan = fields.Nested(PlanSchema)
    quoteId = Text()
    shipmentInfo = fields.Dict(keys=fields.String(), validate=validate.Length(min=1))

    @validates_schema
    def one_kind(self, data, **kwargs):
        """A line is a contract, a lead/non-warrantable product, or shipping protection; never a mix."""
        shipping = "quoteId" in data or "shipmentInfo" in data
        if shipping:
            if "quoteId" not in data:
                raise ValidationError("Shipping protection needs a quoteId with its shipmentInfo.", "quoteId")
            if "shipmentInfo" not in data:
                raise ValidationError("Shipping protection needs shipmentInfo with its quoteId.", "shipmentInfo")
            if "plan" in data or "product" in data:
                raise ValidationError("A shipping protection line carries no product or plan.", "_schema")
        elif "product" not in data:
            raise ValidationError(
                "A line item needs a product (contract, lead, non-warrantable) or quoteId and shipmentInfo "
                "(shipping protection).",
                "product",
            )


class OrderSchema(Strict):
    currency = CurrencyCode(required=True)
    storeId = Text(required=True)
    transactionId = Text(required=True)
    customer = fields.Nested(CustomerSchema, required=True)
    lineItems = fields.List(
        fields.Nested(LineItemSchema),
        required=True,
        validate=validate.Length(1, MAX_LINE_ITEMS, error="Must have from {min} to {max} line items."),
    )
    storeName = Text()
    poNumber = Text()
    merchantCustomerId = Text()
    isTest = StrictBoolean()
    isHistorical = StrictBoolean()
    analytics = fields.Dict(keys=fields.String())
    discounts = fields.List(fields.Dict(keys=fields.String()), validate=validate.Length(max=100))
    productCostTotal = Money()
    shippingCostTotal = Money()
    shippingTaxCostTotal = Money()
    taxCostTotal = Money()
    total = Money()
    transactionDate = MillisTimestamp()
    transactionDelay = StrictNumber(
        validate=validate.Range(0, MAX_SAFE_INTEGER, error="Must be a number of days from 0 to 2^53-1."),
    )
    status = fields.String(validate=validate.OneOf(ORDER_STATUSES))
    resellerMerchant = fields.Dict(keys=fields.String())
    returnPolicyId = Text()
    saleOrigin = fields.Dict(keys=fields.String())

    @validates_schema
    def unique_line_ids(self, data, **kwargs):
        """Each lineItemTransactionId names one line of the order."""
        seen: set[str] = set()
        for index, item in enumerate(data.get("lineItems", ())):
            line_id = item["lineItemTransactionId"]
            if line_id in seen:
                raise ValidationError(
                    {"lineItems": {index: {"lineItemTransactionId": ["Duplicate lineItemTransactionId."]}}}
                )
            seen.add(line_id)
