"""One rule for every email address the service takes (contacts, coordinators, accounts)."""
import pytest

from workflow.addresses import is_address


@pytest.mark.parametrize("address", ["berichte@example.org", "p.mustermann@stadt-herne.de",
                                     "mueller@stadt-koeln.de", "a+tag@x.de",
                                     "koordination@xn--80ak6aa92e.de"])
def test_addresses_people_have_are_taken(address):
    assert is_address(address)


@pytest.mark.parametrize("address", ["jürgen@example.org", "a(b@x.org", "a(b)@x.org",
                                     "%C3(@x.org", "a%ff@x.org",
                                     '"a"@x.org', "a..b@x.de", ".a@x.de", "a.@x.de", "a@x",
                                     "a@-x.de", "a@x..de", "a b@x.de", "a@x.de,b@y.de",
                                     "x" * 65 + "@x.de", "a@" + "x" * 250 + ".de", ""])
def test_addresses_that_mislead_or_cannot_be_delivered_are_refused(address):
    assert not is_address(address)
