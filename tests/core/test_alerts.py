"""Low-balance alerts: an allocation crossing 90% used (once), a pool below its threshold."""

from __future__ import annotations

from ledger_state import billing_verify, refused
from time_travel import into_the_past

from billing_core import alerts, credits, organizations, periods
from billing_core.database import fetch
from billing_core.errors import NotFound, PermissionDenied


def audit_count(db, action: str) -> int:
    return fetch(db, "select count(*) from audit_log where action = :a", {"a": action})[0][0]


def test_an_allocation_alert_is_raised_at_the_90_percent_crossing_once(db, funded_org, db_url):
    org = funded_org
    credits.allocate(db, org.admin, org.id, "user-1", 100)
    credits.deduct(db, org.id, "user-1", 89, "llm", "gpt")
    assert alerts.my_alerts(db, "user-1", org.id).empty

    credits.deduct(db, org.id, "user-1", 1, "llm", "gpt")  # 90 of 100
    credits.deduct(db, org.id, "user-1", 5, "llm", "gpt")  # still over 90%: no second alert

    mine = alerts.my_alerts(db, "user-1", org.id)
    assert list(mine.kind) == ["allocation_90"] and list(mine.observed) == [90]
    assert "90%" in mine.iloc[0].message and "Member 1 has used 90 of 100" in mine.iloc[0].message
    assert audit_count(db, "allocation.exhausted") == 1
    assert billing_verify(db_url).returncode == 0


def test_a_top_up_under_90_percent_resolves_the_alert_and_a_new_crossing_raises_another(db, funded_org, db_url):
    org = funded_org
    credits.allocate(db, org.admin, org.id, "user-1", 100)
    credits.deduct(db, org.id, "user-1", 95, "llm", "gpt")  # 95 of 100
    credits.allocate(db, org.admin, org.id, "user-1", 5)  # 95 of 105: still over 90%, the alert stays
    assert len(alerts.my_alerts(db, "user-1", org.id)) == 1

    credits.allocate(db, org.admin, org.id, "user-1", 95)  # 95 of 200: under 90% again
    assert alerts.my_alerts(db, "user-1", org.id).empty  # the old code left it open
    [resolved] = alerts.org_alerts(db, org.admin, org.id, include_resolved=True).itertuples()
    assert (resolved.status, resolved.resolved_by) == ("resolved", org.admin)
    assert audit_count(db, "alert.resolved") == 1

    credits.deduct(db, org.id, "user-1", 90, "llm", "gpt")  # 185 of 200: crosses again, same allocation
    mine = alerts.my_alerts(db, "user-1", org.id)
    assert list(mine.kind) == ["allocation_90"] and list(mine.observed) == [185]
    assert audit_count(db, "allocation.exhausted") == 2
    assert billing_verify(db_url).returncode == 0


def test_a_new_period_resolves_the_alert_and_can_raise_a_new_one(db, funded_org):
    org = funded_org
    credits.allocate(db, org.admin, org.id, "user-1", 10)
    credits.deduct(db, org.id, "user-1", 10, "llm", "gpt")
    into_the_past(db)  # the job refuses a future time: the set-up happened SHIFT ago
    periods.run(db, periods.current_period(db, org.admin, org.id).period_end)
    assert alerts.my_alerts(db, "user-1", org.id).empty
    credits.deduct(db, org.id, "user-1", 9, "llm", "gpt")  # the reopened allocation of 10
    assert len(alerts.my_alerts(db, "user-1", org.id)) == 1
    assert len(alerts.org_alerts(db, org.admin, org.id, include_resolved=True)) == 2


def test_a_pool_alert_opens_below_the_threshold_and_resolves_with_a_purchase(db, funded_org):
    org = funded_org
    periods.set_low_balance_threshold(db, org.admin, org.id, 9000)
    credits.allocate(db, org.admin, org.id, "user-1", 5000)
    credits.deduct(db, org.id, "user-1", 1500, "llm", "gpt")
    assert alerts.org_alerts(db, org.admin, org.id).empty  # deductions do not evaluate the pool

    periods.run(db)
    periods.run(db)
    pool_alerts = alerts.org_alerts(db, org.admin, org.id)
    assert list(pool_alerts.kind) == ["pool_low"] and list(pool_alerts.observed) == [8500]

    credits.add_credits(db, None, org.id, 1000, 1)  # 9,500 unspent
    assert alerts.org_alerts(db, org.admin, org.id).empty
    assert list(alerts.org_alerts(db, org.admin, org.id, include_resolved=True).status) == ["resolved"]


def test_who_may_see_acknowledge_and_resolve(db, funded_org):
    org = funded_org
    credits.allocate(db, org.admin, org.id, "user-1", 10)
    credits.deduct(db, org.id, "user-1", 10, "llm", "gpt")
    alert_id = int(alerts.my_alerts(db, "user-1", org.id).iloc[0].id)
    assert alerts.my_alerts(db, "user-2", org.id).empty

    refused(db, PermissionDenied, "not an admin", lambda: alerts.org_alerts(db, "user-1", org.id))
    refused(db, PermissionDenied, "not an admin", lambda: alerts.acknowledge(db, "user-2", org.id, alert_id))
    refused(db, NotFound, "has no alert", lambda: alerts.resolve(db, org.admin, org.id, 999_999))
    organizations.create_user(db, None, "outsider", "outsider@example.com")
    refused(db, PermissionDenied, "not a member", lambda: alerts.my_alerts(db, "outsider", org.id))

    alerts.acknowledge(db, "user-1", org.id, alert_id)
    assert list(alerts.org_alerts(db, org.admin, org.id).status) == ["acknowledged"]
    alerts.resolve(db, org.admin, org.id, alert_id)
    assert alerts.org_alerts(db, org.admin, org.id).empty
    assert [audit_count(db, a) for a in ("alert.acknowledged", "alert.resolved")] == [1, 1]
