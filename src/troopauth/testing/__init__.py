"""The conformance kit for storage adapters.

An adapter's test module needs three lines::

    from troopauth.testing import StoreContract

    class TestMyStore(StoreContract):
        @pytest.fixture
        def store(self):
            return MyStore(...)

and gets every test of the contract, one mixin per concern, each in a module
of its own:

* records (``_records``): round trips of every record, whole after every
  change; reads scoped to the account; reads of a transaction's own writes;
  returned collections that are copies;
* listings and hygiene (``_listings``): a troop's tokens a page at a time,
  its members, the expiry window, a token's account, the account's policy, a
  rotation overlap's kept digest, last-use stamps (if the adapter offers
  them);
* the verify path (``_lookup``): lookup by digest, digest uniqueness,
  rotation and revocation, a replaced personal token;
* atomicity (``_atomicity``): a failed transaction leaves nothing, audit
  events commit with their change;
* isolation (``_isolation``): threads, connections and processes racing for
  the last seat, two accounts committing side by side, a store object that
  must re-read what another one changed;
* durability (``_durability``) and the store's lifecycle (``_lifecycle``);
* the change feed (``_feed``), for an adapter that offers one
  (``subscribe``): a replaced token's digests are published at commit and
  never for a rolled-back transaction; a heartbeat comes only after what was
  committed before it was delivered;
* a Hypothesis state machine (``_stateful``) that drives the adapter and
  :class:`~troopauth.MemoryStore` with the same operations and compares
  everything observable.

The ``store`` fixture returns a fresh, empty store, or a **factory**: a
zero-argument callable that opens a store on one shared backing store each
time it is called (a new connection, a reopened file). Tests that need more
than one store object, or a reopen, use the factory; declare what your
adapter can do in :attr:`StoreContract.capabilities` and the tests that do
not apply skip with a reason. For ``processes=True`` the factory must be
picklable (``functools.partial(MyStore, path)``): it is sent to child
processes.

The kit needs ``pytest`` and ``hypothesis`` (it is test code); troopauth itself
does not depend on them.
"""

from __future__ import annotations

from ._atomicity import AtomicityTests
from ._durability import DurabilityTests
from ._feed import FeedTests
from ._helpers import Capabilities as Capabilities
from ._helpers import FrozenClock as FrozenClock
from ._isolation import IsolationTests
from ._lifecycle import LifecycleTests
from ._listings import ListingTests
from ._lookup import LookupTests
from ._records import RecordTests
from ._stateful import StatefulTests

__all__ = ["Capabilities", "FrozenClock", "StoreContract"]


class StoreContract(
    RecordTests,
    ListingTests,
    LookupTests,
    AtomicityTests,
    IsolationTests,
    DurabilityTests,
    FeedTests,
    LifecycleTests,
    StatefulTests,
):
    """Every test an adapter must pass. Subclass it with a ``store`` fixture.

    Class attributes to set in the subclass:

    * ``capabilities``: a :class:`Capabilities`, what the adapter can do;
    * ``state_machine_examples``: how many examples the state machine runs
      (default: a tenth of the Hypothesis profile's ``max_examples``, at
      least 5);
    * ``state_machine_steps``: the most operations in one example (30);
    * ``state_machine_shrink``: ``False`` reports a failure as found, without
      Hypothesis's minutes of shrinking (for an adapter's CI).
    """
