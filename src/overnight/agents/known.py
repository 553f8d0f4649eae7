"""The brief's entries kept between one run's proposals, so each proposal makes only the new ones.

The history grows by one experiment a proposal and most entries stay as they were: :class:`Known` gives
overnight.agents.brief.gather an entry back when what it was made from is the same as then.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

Entry = TypeVar("Entry")  # overnight.agents.brief.Entry (not imported: brief imports this module)


class Known(Generic[Entry]):
    """The entries ``gather`` made for one run, by experiment, with what each was made from.

    An entry is a function of its ``inputs``: (its experiment, the experiment's parent, the best it was
    judged against, the pooled noise's standard deviation, its notes, whether its log tail is shown,
    whether its diff is shown). The records are frozen, so the same objects mean the same values; when
    all of these are the same as for the kept entry, that one is given back. The noise moves with almost
    every repeated run, and an entry depends on it only through its verdict: ``still(entry, inputs)``,
    when given, says whether the kept entry holds under the new noise all the same.
    """

    def __init__(self) -> None:
        self._entries: dict[int, tuple[tuple[Any, ...], Entry]] = {}

    def get(
        self, inputs: tuple[Any, ...], still: Callable[[Entry, tuple[Any, ...]], bool] | None = None
    ) -> Entry | None:
        found = self._entries.get(inputs[0].id)
        if found is None:
            return None
        then, entry = found
        # asked once per finished experiment per proposal: spelled out, as a generator costs more than the test
        same = then[0] is inputs[0] and then[1] is inputs[1] and then[2] is inputs[2] and then[4:] == inputs[4:]
        if same and then[3] != inputs[3]:
            same = still is not None and still(entry, inputs)
        return entry if same else None

    def put(self, inputs: tuple[Any, ...], entry: Entry) -> None:
        self._entries[inputs[0].id] = (inputs, entry)
