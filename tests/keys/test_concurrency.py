"""Two admins revoking each other at the same moment must leave the workspace with one admin (PostgreSQL:
the rule reads rows that another transaction is changing, which only real row locks make safe)."""

import threading

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction

from tests.factories import UserFactory, WorkspaceFactory, grant
from workspaces import services
from workspaces.models import RoleAssignment


@pytest.mark.django_db(transaction=True)
def test_two_admins_revoking_each_other_at_once_leave_one_admin():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL row locks: run with DATABASE_URL=postgres://...")
    workspace = WorkspaceFactory(name="Acme", slug="acme")
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    alices, bobs = grant(alice, "Admin", workspace), grant(bob, "Admin", workspace)
    both_inside = threading.Barrier(2, timeout=30)
    outcomes: list[str] = []

    def revoke(actor, assignment) -> None:
        try:
            with transaction.atomic():
                both_inside.wait()  # both transactions are open before either takes a lock
                services.role_revoke(actor=actor, assignment=assignment)
            outcomes.append("revoked")
        except (ValidationError, PermissionDenied) as exc:
            # Whoever waits for the lock finds either "last active Admin" or that they are no admin any more.
            outcomes.append(f"refused: {exc}")
        except Exception as exc:  # reported in the assertion below, not lost in the thread
            outcomes.append(f"crashed: {exc!r}")
        finally:
            connection.close()

    threads = [threading.Thread(target=revoke, args=(alice, bobs)),
               threading.Thread(target=revoke, args=(bob, alices))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(o.split(":")[0] for o in outcomes) == ["refused", "revoked"], outcomes
    assert RoleAssignment.objects.filter(workspace=workspace, role__name="Admin").count() == 1
