"""Every constraint of battleface's (seed 003) and Webroot's (seed 004) order bodies fails with its field path."""

from __future__ import annotations

import pytest

from orderrelay.sandbox.samples import battleface_order, webroot_order
from orderrelay.schemas import battleface, webroot
from tests.helpers import DELETE, case_ids, errors_of, mutated

UUID = "b9add08c-39b4-4faf-bbc3-1ea8e6816859"


def test_the_samples_are_valid():
    assert battleface.OrderSchema().load(battleface_order("6388da3cf57124e1a8016b12"))["programid"] == 10
    assert webroot.OrderSchema().load(webroot_order("MSP0046543057")) == webroot_order("MSP0046543057")


def test_products_by_ids_or_by_uuids():
    for products in ({"ids": [1007]}, {"uuids": [UUID]}):
        assert battleface.OrderSchema().load(battleface_order("q1", products=products))["products"]


BATTLEFACE = [
    ("quote_id", DELETE, "quote_id"),
    ("quote_id", "6388/da3c", "quote_id"),
    ("programid", DELETE, "programid"),
    ("programid", "10", "programid"),
    ("programid", 0, "programid"),
    ("hostcountrystate", DELETE, "hostcountrystate"),
    ("hostcountrystate", "Ohio", "hostcountrystate"),
    ("hostcountrystate", "ZZ", "hostcountrystate"),
    ("hostcountrystate", "oh", "hostcountrystate"),
    ("products", {}, "products"),
    ("products", {"ids": [1], "uuids": [UUID]}, "products"),
    ("products", {"ids": []}, "products.ids"),
    ("products", {"ids": ["1007"]}, "products.ids.0"),
    ("products", {"uuids": ["not-a-uuid"]}, "products.uuids.0"),
    ("applicant.dob", "2999-01-01", "applicant.dob"),
    ("applicant.dob", "05/01/1997", "applicant.dob"),
    ("applicant.email", "john@", "applicant.email"),
    ("applicant.country_code", "USA!", "applicant.country_code"),
    ("applicant.first_name", "", "applicant.first_name"),
    ("applicant.shoe_size", 44, "applicant.shoe_size"),
    ("start_at", "2027-12-20", "end_at"),
    ("start_at", "tomorrow", "start_at"),
    ("currency_id", "DOLLARS", "currency_id"),
    ("currency_id", "ZZZ", "currency_id"),
    ("destinations", [{"country_code": "XX"}], "destinations.0.country_code"),
    ("destinations", [], "destinations"),
    ("premium", -1, "premium"),
    ("premium", "20", "premium"),
    ("productid", 1007, "productid"),
]


@pytest.mark.parametrize(("path", "value", "error_path"), BATTLEFACE, ids=case_ids(BATTLEFACE))
def test_each_battleface_constraint_fails_with_its_field_path(path, value, error_path):
    errors = errors_of(battleface.OrderSchema, mutated(battleface_order("6388da3cf57124e1a8016b12"), path, value))
    assert error_path in errors, errors


WEBROOT = [
    ("VendorOrderCode", DELETE, "VendorOrderCode"),
    ("VendorOrderCode", "", "VendorOrderCode"),
    ("VendorOrderCode", "MSP 004", "VendorOrderCode"),
    ("PaymentMethod", DELETE, "PaymentMethod"),
    ("PaymentMethod", "CreditCard", "PaymentMethod"),
    ("PurchaseOrder", DELETE, "PurchaseOrder"),
    ("PurchaseOrder", "", "PurchaseOrder"),
    ("PurchaseOrder", "P" * 51, "PurchaseOrder"),
    ("Notes", "hello", "Notes"),
]


@pytest.mark.parametrize(("path", "value", "error_path"), WEBROOT, ids=case_ids(WEBROOT))
def test_each_webroot_constraint_fails_with_its_field_path(path, value, error_path):
    errors = errors_of(webroot.OrderSchema, mutated(webroot_order("MSP0046543057"), path, value))
    assert error_path in errors, errors
