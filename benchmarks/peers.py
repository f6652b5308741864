"""verify() against the bare floor and three peers, in one run.

Section ``peers`` of ``python -m benchmarks``. Every function is called with
verify's signature ``f(value, troop_id, permission, key)`` from the same loop,
over many distinct inputs, and every call succeeds:

* **floor**: SHA-256 of the value, one dict lookup, one set test, one
  ``startswith`` (what any digest-indexed check must do);
* **verify**: ``TroopAuth.verify`` on a ``MemoryStore``;
* **PyJWT**: ``jwt.decode`` of an HS256 token, then the same scope check a
  JWT user writes (troop claim, permission claim, key patterns);
* **itsdangerous**: ``URLSafeTimedSerializer.loads`` of a signed payload
  holding the same claims, then the same scope check;
* **casbin**: ``Enforcer.enforce(subject, domain, key, action)`` with the
  RBAC-with-domains model of casbin's documentation and about 1,000 policy
  lines (``p`` and ``g``).
"""

from __future__ import annotations

import random
import secrets
import statistics
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import Any

from troopauth import MemoryStore, Permission, TroopAuth
from troopauth.tokens import digest

from ._common import (
    GRANT_MIX,
    KEY,
    PERMISSION,
    BulkLoader,
    Call,
    Phases,
    allowed_sets,
    compare,
    make_floor,
    mark,
    sample,
    summary,
    table,
)
from .options import Options

#: verify() may cost at most this many times the floor (DESIGN.md section 7).
FLOOR_TARGET = 2.0
#: verify() must be at least this many times faster than each peer.
PEER_TARGETS = {"PyJWT": 25.0, "itsdangerous": 12.0}

#: The RBAC-with-domains model of casbin's documentation, unchanged.
CASBIN_MODEL = """
[request_definition]
r = sub, dom, obj, act

[policy_definition]
p = sub, dom, obj, act

[role_definition]
g = _, _, _

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = g(r.sub, p.sub, r.dom) && r.dom == p.dom && r.obj == p.obj && r.act == p.act
"""
#: Policy shape: DOMAINS troops, each with ROLES roles, each role allowed
#: OBJECTS (key, action) pairs; USERS role assignments. 400 + 600 = 1,000 lines.
CASBIN_DOMAINS = 20
CASBIN_OBJECTS = ("prod/deploy", "prod/db", "staging/deploy", "stripe-live")
#: Role -> the action it may take on each of CASBIN_OBJECTS, in order.
CASBIN_ROLES = {
    "viewer": ("view", "view", "view", "view"),
    "user": ("use", "use", "use", "use"),
    "editor": ("edit", "edit", "edit", "edit"),
    "deployer": ("edit", "use", "edit", "use"),
    "admin": ("edit", "edit", "edit", "edit"),
}
CASBIN_USERS = 600

_NAMES = {p: p.name.lower() for p in Permission if p.name}


def _scope_ok(patterns: Sequence[str], key: str) -> bool:
    """What a JWT user writes to check a key against scope patterns."""
    if "*" in patterns or "key:" + key in patterns:
        return True
    return any(p.endswith("*") and key.startswith(p[4:-1]) for p in patterns)


def _claims(token_id: str, troop_id: str, kind: int) -> dict[str, Any]:
    """The claims of a signed token carrying one grant of the mix."""
    _, permissions, scope = GRANT_MIX[kind]
    return {
        "sub": token_id,
        "troop": troop_id,
        "perm": permissions.split(","),
        "scope": scope.split(","),
    }


def _checker(load: Callable[[str], Any]) -> Call:
    """A verify-shaped function: *load* a signed value, then check its claims."""
    names = _NAMES

    def check(value: str, troop_id: str, permission: Permission, key: str) -> object:
        claims = load(value)
        if (
            claims["troop"] != troop_id
            or names[permission] not in claims["perm"]
            or not _scope_ok(claims["scope"], key)
        ):
            raise LookupError("denied")
        return claims

    return check


def jwt_case(troop_id: str, count: int) -> tuple[Call, list[str]]:
    """PyJWT HS256: *count* distinct tokens and the check."""
    import jwt

    secret = secrets.token_bytes(32)
    tokens = [
        jwt.encode(
            _claims(f"tok_{i}", troop_id, i % len(GRANT_MIX)), secret, algorithm="HS256"
        )
        for i in range(count)
    ]
    decode = jwt.decode
    algorithms = ["HS256"]

    def load(value: str) -> Any:
        return decode(value, secret, algorithms=algorithms)

    return _checker(load), tokens


def itsdangerous_case(troop_id: str, count: int) -> tuple[Call, list[str]]:
    """itsdangerous: *count* distinct signed payloads and the check."""
    from itsdangerous import URLSafeTimedSerializer

    serializer = URLSafeTimedSerializer(secrets.token_bytes(32), salt="troopauth")
    values = [
        serializer.dumps(_claims(f"tok_{i}", troop_id, i % len(GRANT_MIX)))
        for i in range(count)
    ]
    return _checker(serializer.loads), values


def casbin_case(rng: random.Random, count: int) -> tuple[Call, list[str], int]:
    """casbin RBAC with domains: the enforcer, *count* subjects to ask about,
    and the number of policy lines."""
    import casbin  # type: ignore[import-untyped]  # casbin ships no types

    model = casbin.Enforcer.new_model(text=CASBIN_MODEL)
    enforcer = casbin.Enforcer(model)
    policies = [
        [role, f"troop_{d}", obj, action]
        for d in range(CASBIN_DOMAINS)
        for role, actions in CASBIN_ROLES.items()
        for obj, action in zip(CASBIN_OBJECTS, actions, strict=True)
    ]
    enforcer.add_policies(policies)
    # Every user holds, in one domain, a role allowed to edit prod/deploy.
    domain_of = {
        f"user_{u}": f"troop_{rng.randrange(CASBIN_DOMAINS)}"
        for u in range(CASBIN_USERS)
    }
    editors = ("editor", "deployer", "admin")
    enforcer.add_grouping_policies(
        [[user, rng.choice(editors), dom] for user, dom in domain_of.items()]
    )
    lines = len(enforcer.get_policy()) + len(enforcer.get_grouping_policy())
    enforce = enforcer.enforce
    names = _NAMES

    def check(value: str, troop_id: str, permission: Permission, key: str) -> object:
        if not enforce(value, domain_of[value], key, names[permission]):
            raise LookupError("denied")
        return True

    users = list(domain_of)
    subjects = [users[i % len(users)] for i in range(count)]
    rng.shuffle(subjects)
    return check, subjects, lines


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


def run(opts: Options, phases: Phases) -> dict[str, Any]:
    """Build every case, time them interleaved, and judge the targets."""
    rng = random.Random(opts.seed)
    calls = 2_000 if opts.quick else 10_000
    casbin_calls = 20 if opts.quick else 200
    repeats = opts.repeats or (3 if opts.quick else 15)
    with phases("peers: build the cases"):
        auth = TroopAuth(MemoryStore())
        loader = BulkLoader(auth, seats=calls + 1, batch=10_000)
        loader.grow(calls, "MemoryStore")
        values = sample([v for _, v in loader.kept.values()], rng, calls)
        sets = allowed_sets()
        floor_table: dict[bytes, frozenset[Permission]] = {}
        for i, (_, value) in loader.kept.items():
            floor_table[digest(value)] = sets[i % len(sets)]
        jwt_check, jwt_values = jwt_case(loader.troop_id, calls)
        itsd_check, itsd_values = itsdangerous_case(loader.troop_id, calls)
        casbin_check, casbin_values, casbin_lines = casbin_case(rng, casbin_calls)
    cases: dict[str, tuple[Call, Sequence[str]]] = {
        "floor": (make_floor(floor_table), values),
        "verify": (auth.verify, values),
        "PyJWT": (jwt_check, jwt_values),
        "itsdangerous": (itsd_check, itsd_values),
        "casbin": (casbin_check, casbin_values),
    }
    with phases(f"peers: {repeats} interleaved passes"):
        passes = compare(cases, loader.troop_id, repeats)
    auth.store.close()
    med = {name: statistics.median(xs) for name, xs in passes.items()}
    rows = []
    for name, (_, inputs) in cases.items():
        ratio_floor = med[name] / med["floor"]
        vs_verify = med[name] / med["verify"]
        if name == "verify":
            target: str | None = f"<= {FLOOR_TARGET:g}x floor"
            ok: bool | None = ratio_floor <= FLOOR_TARGET
        elif name in PEER_TARGETS:
            target = f">= {PEER_TARGETS[name]:g}x verify"
            ok = vs_verify >= PEER_TARGETS[name]
        else:
            target, ok = None, None
        rows.append(
            {
                "name": name,
                "calls_per_pass": len(inputs),
                "distinct_inputs": len(set(inputs)),
                **{f"{k}_ns": v for k, v in summary(passes[name]).items()},
                "x_floor": ratio_floor,
                "x_verify": vs_verify,
                "target": target,
                "pass": ok,
                "passes_ns": passes[name],
            }
        )
    return {
        "versions": {
            name: _version(name) for name in ("pyjwt", "itsdangerous", "pycasbin")
        },
        "repeats": repeats,
        "key": KEY,
        "permission": PERMISSION.name,
        "casbin_policy_lines": casbin_lines,
        "rows": rows,
    }


def report(result: dict[str, Any]) -> None:
    """Print the peers table."""
    print(
        "\nPEERS: verify() vs the floor and other libraries "
        "(median ns per call; lower is faster)"
    )
    print(
        f"   median of {result['repeats']} interleaved passes; every call "
        f"succeeds (EDIT on {result['key']!r}); casbin: "
        f"{result['casbin_policy_lines']:,} policy lines"
    )
    print(
        "   "
        + ", ".join(f"{name} {ver}" for name, ver in result["versions"].items())
        + "\n"
    )
    print(
        table(
            [
                "check",
                "calls/pass",
                "distinct",
                "median ns",
                "min ns",
                "x floor",
                "x verify",
                "target",
                "mark",
            ],
            [
                [
                    r["name"],
                    f"{r['calls_per_pass']:,}",
                    f"{r['distinct_inputs']:,}",
                    f"{r['median_ns']:,.0f}",
                    f"{r['min_ns']:,.0f}",
                    f"{r['x_floor']:,.2f}",
                    f"{r['x_verify']:,.1f}",
                    r["target"] or "",
                    "" if r["pass"] is None else mark(r["pass"]),
                ]
                for r in result["rows"]
            ],
        )
    )
