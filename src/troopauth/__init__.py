"""troopauth: scoped, seated API tokens for Python services.

This module only re-exports the public names; each lives in a module of its own.
"""

from .auth import TroopAuth as TroopAuth
from .errors import AccessDenied as AccessDenied
from .errors import InvalidArgument as InvalidArgument
from .errors import InvalidToken as InvalidToken
from .errors import NotFound as NotFound
from .errors import SeatsExhausted as SeatsExhausted
from .errors import StoreError as StoreError
from .errors import TroopAuthError as TroopAuthError
from .grant import Grant as Grant
from .memory import MemoryStore as MemoryStore
from .models import Account as Account
from .models import AuditAction as AuditAction
from .models import AuditEvent as AuditEvent
from .models import IssuedToken as IssuedToken
from .models import Kind as Kind
from .models import Member as Member
from .models import Principal as Principal
from .models import SeatPool as SeatPool
from .models import TokenInfo as TokenInfo
from .models import Troop as Troop
from .permission import Permission as Permission
from .scope import Scope as Scope
from .sqlite import SQLiteStore as SQLiteStore

__all__ = [
    "AccessDenied",
    "Account",
    "AuditAction",
    "AuditEvent",
    "Grant",
    "InvalidArgument",
    "InvalidToken",
    "IssuedToken",
    "Kind",
    "Member",
    "MemoryStore",
    "NotFound",
    "Permission",
    "Principal",
    "SQLiteStore",
    "Scope",
    "SeatPool",
    "SeatsExhausted",
    "StoreError",
    "TokenInfo",
    "Troop",
    "TroopAuth",
    "TroopAuthError",
]

__version__ = "0.1.0.dev0"
