"""Inventory as a reaction to an apply (registered in ``settings.TIMELINE_REACTIONS``)."""

from apps.inventory.services import allocations_refresh, inventory_apply
from apps.timeline.reactions import Phase, Touched, reaction


@reaction(phase=Phase.IN_TRANSACTION, stage="inventory")
def book_inventory(touched: Touched) -> None:
    """The stock events an apply recorded go to the ledger and their positions, and the touched
    orders' allocations follow their stage, in the apply's transaction."""
    inventory_apply(milestones=touched.milestones)
    allocations_refresh(order_ids=touched.order_ids)
