"""What an integration raises when the library of its extra is missing (private)."""

from __future__ import annotations


def missing_extra(module: str, extra: str, cause: ImportError) -> ImportError:
    """An ImportError naming the extra that brings what *module* needs.

    Both install forms are named: from a package index and from a checkout of
    the repository. Raise it ``from`` *cause*, so the original stays visible.
    """
    return ImportError(
        f"{module} needs the {extra!r} extra: pip install 'troopauth[{extra}]' "
        f"(from a checkout of the repository: pip install '.[{extra}]')",
        name=cause.name,
    )
