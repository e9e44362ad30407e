"""Who sees money: freight charge amounts and invoice amounts are each behind a permission.

A person without one still sees the line ("Freight charge posted", the invoice and its status),
never the amount: on order pages, in the timeline API, in case lists, exports and the cases API.
"""

from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from apps.timeline.events import EventKind

FREIGHT_AMOUNTS = "billing.view_freight_amounts"
INVOICE_AMOUNTS = "billing.view_invoice_amounts"
FREIGHT_KINDS = frozenset(kind.value for kind in EventKind if kind.value.startswith("freight."))
INVOICE_KINDS = frozenset(kind.value for kind in EventKind if kind.value.startswith("invoice."))


@dataclass(frozen=True)
class Amounts:
    """The money one person may see."""

    freight: bool
    invoice: bool

    @classmethod
    def of(cls, user: AbstractBaseUser | AnonymousUser) -> "Amounts":
        return cls(freight=user.has_perm(FREIGHT_AMOUNTS), invoice=user.has_perm(INVOICE_AMOUNTS))

    @property
    def hidden_kinds(self) -> frozenset[str]:
        """Event kinds whose ``amount`` (and money attributes, such as a quote) are not shown."""
        return (frozenset() if self.freight else FREIGHT_KINDS) | (frozenset() if self.invoice else INVOICE_KINDS)


ALL_AMOUNTS = Amounts(freight=True, invoice=True)


def is_money_attribute(name: str) -> bool:
    """Event attributes that carry an amount (``quoted_amount`` on a freight charge, for one)."""
    return "amount" in name.lower()
