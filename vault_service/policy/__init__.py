"""Pure policy layer: the model, its TOML loader and the decision function."""

from vault_service.policy.decide import AccessRequest, Decision, decide
from vault_service.policy.loader import load_policy
from vault_service.policy.model import (
    Action,
    Category,
    Policy,
    Principal,
    PrincipalEntry,
    Purpose,
    Role,
)

__all__ = [
    "AccessRequest",
    "Action",
    "Category",
    "Decision",
    "Policy",
    "Principal",
    "PrincipalEntry",
    "Purpose",
    "Role",
    "decide",
    "load_policy",
]
